"""The command line as users meet it: exit codes, messages, result files (SPEC.md)."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pint
import pytest

from tests.conftest import REPO


def bohmpower(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bohmpower", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or REPO, timeout=300)


SMALL_TWO_ELECTRON = dict(
    particles={"count": 2, "mass": 1.0, "statistics": "fermion"},
    grid={"x_min": -30.0, "x_max": 30.0, "points": 64, "boundary": "absorbing",
          "absorber_width": 6.0},
    time={"dt": 0.05, "t_end": 1.0, "save_every": 5},
    interaction={"kind": "soft_coulomb", "softening": 1.0},
    field=[{"kind": "linear_drop", "bias": 0.1, "x_left": -5.0, "x_right": 5.0, "smoothing": 1.0}],
    initial={"packet": [{"center": -8.0, "width": 2.0, "wavenumber": 0.4},
                        {"center": 4.0, "width": 2.0, "wavenumber": -0.2}]},
    volume=[{"name": "dev", "x_min": -5.0, "x_max": 5.0},
            {"name": "soft", "x_min": -12.0, "x_max": 0.0, "smoothing": 1.0}],
)


def test_exact_writes_a_self_describing_result_file(run_file, tmp_path):
    path = run_file(**SMALL_TWO_ELECTRON)
    out = tmp_path / "out.h5"
    r = bohmpower("exact", path, "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    ureg = pint.UnitRegistry()
    with h5py.File(out, "r") as f:
        assert f.attrs["schema"] == "bohmpower/1" and f.attrs["method"] == "exact"
        for key in ("version", "config", "created", "numpy_version", "scipy_version",
                    "numba_version", "h5py_version", "git_commit", "config_hash"):
            assert key in f.attrs, key
        n_t, n_x = f["time"].shape[0], f["grid/x"].shape[0]
        assert n_t == 5 and n_x == 64
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for name in names:
            ureg.parse_expression(f[name].attrs["units"])  # every dataset carries pint units
        for q in ("particles", "particle_flux", "energy", "power", "field_work", "interaction",
                  "quantum", "quantum_flux", "quantum_nonlocal", "boundary_flux", "absorbed"):
            assert f[f"volumes/dev/{q}"].shape == (n_t,)
        for q in ("density", "current", "energy_density", "power_density", "energy_current"):
            assert f[f"fields/{q}"].shape == (n_t, n_x)
        # density integrates to N; dimension scales label the axes
        dx = f["grid/x"][1] - f["grid/x"][0]
        np.testing.assert_allclose(f["fields/density"][0].sum() * dx, 2.0, rtol=1e-10)
        assert f["fields/density"].dims[0][0].name == "/time"
        assert f["fields/density"].dims[1][0].name == "/grid/x"
    info = bohmpower("info", out)
    assert info.returncode == 0 and "method exact" in info.stdout and "dev" in info.stdout


def test_existing_output_is_never_overwritten_without_flag(run_file, tmp_path):
    path = run_file(**SMALL_TWO_ELECTRON)
    out = tmp_path / "out.h5"
    out.write_bytes(b"finished work")
    r = bohmpower("exact", path, "-o", out, "-q")
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert out.read_bytes() == b"finished work"


@pytest.mark.parametrize(
    "change, key",
    [
        ({"grid": {"x_min": -30.0, "x_max": 30.0, "points": 64, "boundary": "periodic",
                   "colour": 3}}, "grid.colour"),
        ({"time": {"dt": 0.05, "t_end": 1.01, "save_every": 5}}, "time.t_end"),
        ({"volume": [{"name": "dev", "x_min": -5.0, "x_max": 50.0}]}, "volume[0].x_max"),
    ],
)
def test_bad_run_file_exits_2_with_the_key_and_no_traceback(run_file, tmp_path, change, key):
    sections = dict(SMALL_TWO_ELECTRON)
    sections.update(change)
    path = run_file(**sections)
    for cmd in ("exact", "check"):
        r = bohmpower(cmd, path, "-o", tmp_path / "x.h5") if cmd == "exact" else bohmpower(cmd, path)
        assert r.returncode == 2, (cmd, r.stderr)
        assert key in r.stderr and "Traceback" not in r.stderr


def test_check_prints_setup_and_estimates(run_file):
    r = bohmpower("check", run_file(**SMALL_TWO_ELECTRON))
    assert r.returncode == 0, r.stderr
    assert "peak memory" in r.stdout and "run time" in r.stdout


def test_info_refuses_a_file_that_is_not_a_result(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_text("not hdf5")
    r = bohmpower("info", bad)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_builtin_demos_run_and_compare(tmp_path):
    """The README's main job: `bohmpower run` and `bohmpower exact` without a file write their
    results in the current folder, `compare` reads both, and `plot` draws the cw file."""
    r = bohmpower("run", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = bohmpower("exact", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cw, ex = tmp_path / "bohmpower_demo.cw.h5", tmp_path / "bohmpower_demo.exact.h5"
    with h5py.File(cw, "r") as f:
        assert f.attrs["method"] == "cw" and f.attrs["samples"] == 512
        assert not f.attrs["exchange"] and f["diagnostics/crossings"][()] >= 0
    r = bohmpower("compare", ex, cw, cwd=tmp_path)
    assert "overall:" in r.stdout and "of scale  max |diff| / max |exact|" in r.stdout, r.stderr
    # the exit code follows the verdict, and the output says which code and why
    disagree = "overall: DISAGREE" in r.stdout
    assert r.returncode == (3 if disagree else 0), r.stdout + r.stderr
    assert f"exit code {r.returncode}: " in r.stdout
    # the README's numbers: the points fewer than 10 worlds carry (the first arrivals in `right`,
    # windows in which a handful of worlds cross an edge) are reported apart, with their counts,
    # and the 434 points the worlds resolve agree
    assert "not resolved by 512 worlds" in r.stdout
    assert "  right: 30 frames (t = 1.5 to 16) and 38 windows" in r.stdout
    assert "overall: agree: 434 points" in r.stdout and r.returncode == 0
    r = bohmpower("compare", ex, cw, "--report-only", cwd=tmp_path)
    assert r.returncode == 0 and "exit code 0: " in r.stdout, r.stderr
    r = bohmpower("plot", cw, "-o", tmp_path / "demo.png", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "demo.png").stat().st_size > 10_000, r.stderr


def test_check_estimates_a_large_n_cw_run_without_the_exact_grid(tmp_path):
    """A `run` file with 60 electrons: check prints CW estimates (the exact grid n_x^60 would not
    fit anywhere) and exits 0."""
    r = bohmpower("check", REPO / "examples" / "04_large_n_channel" / "run.toml")
    assert r.returncode == 0, r.stderr
    assert "conditional-wavefunction estimates" in r.stdout and "60 conditional" in r.stdout
