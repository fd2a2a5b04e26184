"""`compare` keeps the verdict for what the worlds can resolve: points where fewer than
MIN_WORLDS_RESOLVED worlds contributed (the counts the result file stores beside every estimate) are
reported apart ("not resolved by M worlds") and left out of the verdict; exact runs agree with their
own exact trajectories."""

from __future__ import annotations

import numpy as np
import pytest

import bohmpower
from bohmpower import compare as compare_module
from bohmpower.compare import MIN_WORLDS_RESOLVED, compare_files, plot_comparison
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
        assert r.agreement is None, r.quantity  # nothing of `edge` is judged
        if r.max_abs_diff == 0:
            # exactly 0 in both files (no field, no pair force, no layers): nothing to resolve
            assert r.unresolved_t.size == 0, r.quantity
            continue
        assert r.unresolved_t.size == r.n_points, r.quantity
        assert np.all(r.unresolved_worlds < MIN_WORLDS_RESOLVED)
        assert np.all(r.unresolved_electrons > 0)  # the exact occupancy, not the empty estimate
    assert {r.quantity for r in edge if r.unresolved_t.size} >= {"particles", "energy", "power"}
    for r in packet:
        if r.quantity == "boundary_flux":
            # no world crosses an edge 2.5 widths out in t < 1: the tail's flux is not resolved
            assert r.unresolved_t.size == r.n_points and np.all(r.unresolved_worlds == 0)
        else:
            assert r.unresolved_t.size == 0, r.quantity
    assert cmp.overall.n_points == sum(r.agreement.n_points for r in packet if r.agreement)
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
    # one convention with `bohmpower plot`: a window is drawn at its centre
    power_ax = next(ax for ax in fig.axes if ax.get_title().startswith("packet: power"))
    starts, *_ = cmp.series[("packet", "power", "window")]
    np.testing.assert_allclose(power_ax.get_lines()[0].get_xdata(), starts + 0.5 * 0.25)
    assert power_ax.get_xlabel() == "t (window centre)"


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
    assert cmp.overall.ok and cmp.overall.n_points > 400, cmp.table()
    right = [r for r in cmp.rows if r.volume == "right"]
    assert all(r.unresolved_t.size > 20 for r in right)
    # the frames left out are the first arrivals: one run of frames, after those where `right` is
    # still empty to round-off in both (nothing to resolve) and before those the worlds resolve
    _, _, resolved = next(r for r in right if r.quantity == "particles").z_series
    left_out = np.flatnonzero(~resolved)
    assert np.all(np.diff(left_out) == 1) and 0 < left_out[0] and left_out[-1] < resolved.size - 1


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


def _without_counts(monkeypatch):
    """read_result as for a file written before the counts existed (the older rules apply)."""
    original = compare_module.read_result

    def read(path, **kw):
        out = original(path, **kw)
        for where in ("volumes", "trajectory_estimates"):
            for vol in out.get(where, {}).values():
                for d in (vol["data"], vol["window"]):
                    for key in [k for k in d if k.endswith("_worlds")]:
                        del d[key]
        return out

    monkeypatch.setattr(compare_module, "read_result", read)


def test_a_term_carried_by_a_few_worlds_of_a_full_volume_is_not_judged(tmp_path, monkeypatch):
    """One electron in a volume [-6, 14] that holds all 192 worlds, with a field (a 0.5 hartree
    drop) only in [7, 11], which a handful of worlds reach: the field work is carried by those few.
    From the occupancy alone (M N_Omega = 192, the rule before the counts) those windows were
    judged and the run DISAGREEd with its own exact trajectories (|z| 154); the stored counts say
    how few worlds carry the term there, and the verdict is AGREE."""
    config = make_config(
        tmp_path,
        volume=[{"name": "wide", "x_min": -6.0, "x_max": 14.0}],
        field=[{"kind": "linear_drop", "bias": 0.5, "x_left": 7.0, "x_right": 11.0,
                "smoothing": 0.3}],
        time={"dt": 0.05, "t_end": 2.0, "save_every": 5, "window": 0.25},
        trajectories={"count": 192, "seed": 1, "store": 2},
    )
    path = bohmpower.save(bohmpower.exact(config), tmp_path / "drop.exact.h5")
    cmp = compare_files(path, path)
    assert cmp.overall.ok, cmp.table()
    rows = {(r.quantity, r.kind): r for r in cmp.rows}
    particles, work = rows[("particles", "frame")], rows[("field_work", "window")]
    assert particles.unresolved_t.size == 0  # every world is in the volume...
    assert work.unresolved_t.size >= 4  # ...but few of them carry the field work
    assert np.all(work.unresolved_worlds < MIN_WORLDS_RESOLVED)
    assert "not resolved by 192 worlds" in cmp.table()
    _without_counts(monkeypatch)
    old = compare_files(path, path)
    assert not old.overall.ok and old.overall.max_abs_z > 20  # the rule the counts replace
    assert "this file stores no counts" not in old.table()  # nothing unresolved by that rule


def test_a_term_that_vanishes_identically_is_judged_against_the_exact_runs_own_error(
        tmp_path, monkeypatch):
    """Over the whole cell the interaction term P_C vanishes identically: the exact grid's value is
    a quadrature residual, its own trajectories' estimate is round-off (~1e-20) with a round-off
    error bar and a round-off floor (one contributing world's value over M). Where the counts let
    such a point be judged (n3_weak's interacting run: 11 contributing worlds; three electrons, so
    the worlds' pair sums are round-off, not exact zeros), the exact run's own error (its stored
    quadrature error and ``EXACT_WINDOW_ACCURACY`` of the volume's scale) must be the exact side's
    error bar: then the row agrees; without it the z-score is the ratio of two round-offs, orders
    of magnitude beyond any bound."""
    import h5py

    config = make_config(
        tmp_path,
        particles={"count": 3, "mass": 1.0, "statistics": "fermion"},
        grid={"x_min": -20.0, "x_max": 20.0, "points": 48, "boundary": "periodic"},
        interaction={"kind": "soft_coulomb", "softening": 1.0, "relative_permittivity": 2.0},
        initial={"packet": [{"center": -6.0, "width": 2.0, "wavenumber": 0.6},
                            {"center": 0.0, "width": 2.0, "wavenumber": 0.0},
                            {"center": 6.0, "width": 2.0, "wavenumber": -0.6}]},
        field=[{"kind": "linear_drop", "bias": 0.2, "x_left": -8.0, "x_right": 8.0,
                "smoothing": 1.0}],
        volume=[{"name": "all", "x_min": -20.0, "x_max": 20.0}],
        time={"dt": 0.05, "t_end": 2.0, "save_every": 5, "window": 0.5},
        trajectories={"count": 128, "seed": 1, "store": 2},
    )
    path = bohmpower.save(bohmpower.exact(config), tmp_path / "pair.exact.h5")
    with h5py.File(path, "r") as f:  # a quadrature residual against round-off
        grid = np.abs(f["volumes/all/window/interaction"][()]).max()
        worlds = np.abs(f["trajectory_estimates/volumes/all/window/interaction"][()]).max()
    assert grid > 1e6 * worlds, (grid, worlds)
    original = compare_module.read_result

    def judged(p, drop_quadrature=False, **kw):
        out = original(p, **kw)
        for vol in out["trajectory_estimates"].values():
            if "interaction_worlds" in vol["window"]:
                vol["window"]["interaction_worlds"] = np.full_like(
                    vol["window"]["interaction_worlds"], 128.0)
        if drop_quadrature:
            for vol in out.get("volumes", {}).values():
                vol["window"].pop("quadrature_error", None)
        return out

    monkeypatch.setattr(compare_module, "read_result", judged)
    pc = {(r.volume, r.quantity, r.kind): r for r in compare_files(path, path).rows}[
        ("all", "interaction", "window")]
    assert pc.agreement is not None and pc.agreement.max_abs_z < 4, pc.agreement
    monkeypatch.setattr(compare_module, "read_result",
                        lambda p, **kw: judged(p, drop_quadrature=True, **kw))
    monkeypatch.setattr(compare_module, "EXACT_WINDOW_ACCURACY", 0.0)
    pc = {(r.volume, r.quantity, r.kind): r for r in compare_files(path, path).rows}[
        ("all", "interaction", "window")]
    assert pc.agreement is not None and pc.agreement.max_abs_z > 1e3, pc.agreement
