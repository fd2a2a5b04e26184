"""`compare` keeps the verdict for what the worlds can resolve: points where fewer than
MIN_ELECTRONS_RESOLVED electrons of the M worlds are in the volume are reported apart ("not resolved
by M worlds") and left out of the verdict; exact runs agree with their own exact trajectories."""

from __future__ import annotations

import numpy as np
import pytest

import bohmpower
from bohmpower.compare import MIN_ELECTRONS_RESOLVED, compare_files, plot_comparison
from tests.conftest import make_config


@pytest.fixture(scope="module")
def one_electron_file(tmp_path_factory):
    """One electron (packet at 0, width 2): volume "packet" holds it, volume "edge" (x > 6, three
    widths out) holds 1e-3 of it, i.e. about 0.3 of 192 worlds' electrons."""
    folder = tmp_path_factory.mktemp("resolution")
    config = make_config(
        folder,
        volume=[{"name": "packet", "x_min": -5.0, "x_max": 5.0},
                {"name": "edge", "x_min": 6.0, "x_max": 12.0}],
        trajectories={"count": 192, "seed": 3, "store": 2},
    )
    return bohmpower.save(bohmpower.exact(config), folder / "one.exact.h5")


def test_points_without_enough_worlds_are_reported_apart_and_not_judged(one_electron_file):
    cmp = compare_files(one_electron_file, one_electron_file)
    edge = [r for r in cmp.rows if r.volume == "edge"]
    packet = [r for r in cmp.rows if r.volume == "packet"]
    assert edge and packet
    for r in edge:
        assert r.unresolved_t.size == r.n_points and r.agreement is None, r.quantity
        assert np.all(r.unresolved_electrons < MIN_ELECTRONS_RESOLVED)
        assert np.all(r.unresolved_electrons > 0)  # the exact occupancy, not the empty estimate
    for r in packet:
        assert r.unresolved_t.size == 0 and r.agreement is not None, r.quantity
    assert cmp.overall.n_points == sum(r.agreement.n_points for r in packet)
    assert cmp.overall.ok, cmp.table()
    table = cmp.table()
    assert "not resolved by 192 worlds" in table
    assert "  edge: 5 frames (t = 0 to 1) and 4 windows (starting t = 0 to 0.75)" in table
    assert "unres." in table and "of scale  max |diff| / max |exact|" in table
    for r in cmp.rows:  # every point of every row carries its z and whether it was judged
        t, z, resolved = r.z_series
        assert t.shape == z.shape == resolved.shape == (r.n_points,)


def test_the_comparison_figure_has_a_z_panel_per_volume(one_electron_file, tmp_path, monkeypatch):
    import matplotlib.figure

    cmp = compare_files(one_electron_file, one_electron_file)
    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda self, *a, **k: saved.append(self))
    plot_comparison(cmp, tmp_path / "cmp.png")
    (fig,) = saved
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    z_panels = [t for t in titles if "z = (exact - other) / s.e." in t]
    assert len(z_panels) == 2 and all("not resolved by 192 worlds" in t for t in z_panels)
    z_ax = next(ax for ax in fig.axes if "z = (exact - other)" in ax.get_title())
    bound = cmp.overall.max_bound
    levels = sorted(line.get_ydata()[0] for line in z_ax.get_lines()
                    if line.get_linestyle() == "--")
    assert levels == pytest.approx([-bound, bound])
    labels = {line.get_label() for ax in fig.axes for line in ax.get_lines()}
    assert "exact trajectories" in labels


def test_the_demo_agrees_with_its_own_exact_trajectories(tmp_path):
    """The built-in demo's run file through `bohmpower exact` (512 exact trajectories): before the
    resolution rule its first arrivals in `right` (0.3-3 of the worlds' electrons) made it
    DISAGREE (|z| up to 19.8) against itself."""
    import subprocess
    import sys

    from bohmpower.cli import DEMO_RUN, _demo_path
    from tests.conftest import REPO

    out = tmp_path / "demo.exact.h5"
    r = subprocess.run([sys.executable, "-m", "bohmpower", "exact", str(_demo_path(DEMO_RUN)), "-o",
                        str(out), "-q"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    cmp = compare_files(out, out)
    assert cmp.overall.ok and cmp.overall.n_points > 500, cmp.table()
    right = [r for r in cmp.rows if r.volume == "right"]
    assert all(r.unresolved_t.size > 20 for r in right)
    worst = max(np.nanmax(np.abs(r.unresolved_z)) for r in right)
    assert worst > cmp.overall.max_bound  # what used to set the verdict is reported apart


def test_example_02_run_file_agrees_with_its_own_exact_trajectories(tmp_path):
    """Example 02's cw.toml (one file for both engines) through `bohmpower exact --samples 512`,
    shrunk to t_end = 8 as in test_example_02: the exact solver and its own exact trajectories."""
    import subprocess
    import sys
    import tomllib

    from tests.conftest import REPO, write_run_file

    config = tomllib.loads((REPO / "examples" / "02_two_electrons_exact_vs_cw" / "cw.toml")
                           .read_text())
    config["time"]["t_end"] = 8.0
    run = write_run_file(tmp_path / "cw.toml", config)
    out = tmp_path / "cw.exact.h5"
    r = subprocess.run([sys.executable, "-m", "bohmpower", "exact", str(run), "--samples", "512",
                        "-o", str(out), "-q"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "note: [method] is read by `bohmpower run` only" not in r.stderr  # -q: warnings only
    cmp = compare_files(out, out)
    assert cmp.other_source.startswith("exact Bohmian trajectories")
    assert cmp.overall.ok and cmp.overall.n_points > 100, cmp.table()
