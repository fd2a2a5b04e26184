"""`bohmpower plot`: unit labels as people write them, volumes in spatial order, the format chosen by the
suffix of -o, and a legend that sits outside every panel."""

from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bohmpower import plot  # noqa: E402
from bohmpower.errors import ConfigError  # noqa: E402
from tests.conftest import REPO, run_dict, write_run_file  # noqa: E402


@pytest.mark.parametrize("pint_units, label", [
    ("hartree/atomic_unit_of_time", "Ha/a.u."),
    ("hartree/bohr/atomic_unit_of_time", "Ha/bohr/a.u."),
    ("atomic_unit_of_time", "a.u."),
    ("eV/fs", "eV/fs"),
    ("eV/nm/fs", "eV/nm/fs"),
    ("1/nm", "1/nm"),
    ("dimensionless", ""),
])
def test_unit_labels_are_written_the_usual_way(pint_units, label):
    assert plot._label(pint_units) == label
    assert "hartree" not in plot._axis("P", pint_units) and "atomic_unit" not in plot._axis("P",
                                                                                             pint_units)


def test_volumes_are_drawn_left_to_right():
    def vol(a, b):
        return {"attrs": {"x_min": a, "x_max": b}}

    vols = {"right": vol(10, 30), "all": vol(-80, 80), "left": vol(-40, -10), "barrier": vol(-3, 3),
            "centre": vol(-1, 1)}
    assert plot.spatial_order(vols) == ["left", "centre", "barrier", "all", "right"]


@pytest.mark.parametrize("name", ["fig.jpg", "fig", "fig.png.bak"])
def test_an_unknown_suffix_is_refused_naming_the_option(name, tmp_path):
    with pytest.raises(ConfigError) as info:
        plot.figure_format(tmp_path / name)
    assert info.value.key == "-o/--output" and ".png, .pdf, .svg" in str(info.value)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    d = tmp_path_factory.mktemp("plot")
    data = run_dict(volume=[{"name": "right", "x_min": 5.0, "x_max": 20.0},
                            {"name": "left", "x_min": -20.0, "x_max": -5.0},
                            {"name": "middle", "x_min": -5.0, "x_max": 5.0}],
                    trajectories={"count": 128, "seed": 5, "store": 2})
    path = write_run_file(d / "run.toml", data)
    out = d / "run.exact.h5"
    r = subprocess.run([sys.executable, "-m", "bohmpower", "exact", str(path), "-o", str(out), "-q"],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_the_suffix_chooses_the_format(result, suffix, magic, tmp_path):
    out = plot.plot_result(result, tmp_path / f"fig{suffix}")
    assert out.read_bytes()[:len(magic)] == magic


def test_figure_layout_order_labels_and_legend(result, tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    plot.plot_result(result, tmp_path / "fig.png")
    (fig,) = figures
    titles = [ax.get_title() for ax in fig.axes if ax.get_title().endswith("nm") or "bohr" in
              ax.get_title() and "[" in ax.get_title()]
    assert [t.split(":")[0] for t in titles] == ["left", "middle", "right"]
    labels = " ".join(ax.get_xlabel() + " " + ax.get_ylabel() for ax in fig.axes)
    assert "(a.u.)" in labels and "(Ha/a.u.)" in labels and "(Ha)" in labels
    assert "hartree" not in labels and "atomic_unit" not in labels
    top = fig.axes[0]  # U0 (and U0 + q phi) along x above everything, the volumes shaded
    assert top.get_title().startswith("potential along x") and len(top.patches) == 3
    # no legend inside a panel: one figure legend, outside them
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert len(fig.legends) == 1 and "P_J field work" in [t.get_text() for t in fig.legends[0].texts]


def test_options_choose_volumes_terms_time_range_and_a_symlog_axis(result, tmp_path,
                                                                    monkeypatch):
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    plot.plot_result(result, tmp_path / "fig.svg", volumes="right,left",
                     terms=["power", "field_work"], t_range=(0.2, 0.8), symlog=True)
    (fig,) = figures
    power_axes = [ax for ax in fig.axes if "power and its terms" in ax.get_title()]
    assert [ax.get_title().split(":")[0] for ax in power_axes] == ["left", "right"]  # in space
    for ax in power_axes:
        assert ax.get_yscale() == "symlog"
        assert ax.get_xlim() == pytest.approx((0.2, 0.8))
        labels = {line.get_label() for line in ax.get_lines()}
        assert {"P (total)", "P_J field work"} <= labels and "P_B boundary flux" not in labels
    for bad, key in (({"volumes": "left,nowhere"}, "--volumes"), ({"terms": "heat"}, "--terms"),
                     ({"t_range": (1.0, 0.5)}, "--t-range")):
        with pytest.raises(ConfigError) as err:
            plot.plot_result(result, tmp_path / "bad.png", **bad)
        assert err.value.key == key


def test_compare_figure_names_the_other_side_and_marks_round_off(result, tmp_path, monkeypatch):
    """`compare --plot` of a file against its own exact trajectories: the orange line is "exact
    trajectories" (not "other"), units read Ha/a.u., and the periodic grid's `absorbed` panel (zero up
    to round-off) says so in its title."""
    from bohmpower.compare import compare_files, plot_comparison

    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    cmp = compare_files(result, result)
    plot_comparison(cmp, tmp_path / "cmp.png")
    (fig,) = figures
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.texts][:2] == ["exact (grid)", "exact trajectories"]
    titles = {ax.get_title().split("\n")[0]: ax.get_title() for ax in fig.axes if ax.get_visible()}
    assert titles["middle: absorbed (window avg)"].endswith("exact value is round-off only")
    assert not titles["middle: power (window avg)"].endswith("round-off only")
    assert "Ha/a.u." in {ax.get_ylabel() for ax in fig.axes}


def test_the_potential_panel_draws_the_bias_of_a_linear_drop(tmp_path):
    """The result file keeps each drive's potential shape q phi/f (the model's own): a linear_drop of
    bias 0.3 hartree lowers U0 + q phi by 0.3 from its left to its right end at the field's
    strongest (the figure's top panel draws it: test_figure_layout_order_labels_and_legend)."""
    from bohmpower.io import read_result

    data = run_dict(field=[{"kind": "linear_drop", "bias": 0.3, "x_left": -10.0,
                            "x_right": 10.0, "smoothing": 1.0}], trajectories=None)
    path = write_run_file(tmp_path / "run.toml", data)
    out = tmp_path / "run.exact.h5"
    r = subprocess.run([sys.executable, "-m", "bohmpower", "exact", str(path), "-o", str(out), "-q"],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr
    res = read_result(out, fields=True)
    x = res["x"]
    v = plot.drive_potential(res["drive_potential"], res["time_profile"])
    left, right = v[np.searchsorted(x, -20.0)], v[np.searchsorted(x, 20.0)]
    assert right - left == pytest.approx(-0.3, abs=2e-3)
    assert not np.any(plot.drive_potential(np.zeros((0, x.size)), np.zeros((0, 3))))
