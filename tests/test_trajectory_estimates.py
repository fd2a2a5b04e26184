"""Exact Bohmian trajectory estimates against the grid values they must reproduce (THEORY.md 5.7).

Agreement is judged with the RMS of z and a Bonferroni bound on max |z| (power.statistics), at a
fixed seed, never with a fixed number of sigmas.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bohmpower.driver import ExactSolver
from bohmpower.power.statistics import agreement, block_correlation, z_scores
from tests.conftest import REPO, make_config, write_run_file, run_dict

WINDOW_TERMS = ("power", "field_work", "interaction", "quantum", "boundary_flux")


def _case(n, count, seed=11, t_end=4.0):
    packets = [{"center": -4.0, "width": 1.5, "wavenumber": 0.6},
               {"center": 2.0, "width": 1.5, "wavenumber": -0.3}][:n]
    return dict(
        particles={"count": n, "mass": 1.0, "statistics": "fermion"},
        grid={"x_min": -30.0, "x_max": 30.0, "points": 128, "boundary": "periodic"},
        time={"dt": 0.05, "t_end": t_end, "save_every": 10},
        interaction={"kind": "soft_coulomb", "softening": 1.0},
        field=[{"kind": "linear_drop", "bias": 0.2, "x_left": -5.0, "x_right": 5.0,
                "smoothing": 1.0}],
        initial={"packet": packets},
        volume=[{"name": "dev", "x_min": -3.0, "x_max": 3.0},
                {"name": "soft", "x_min": -8.0, "x_max": 0.0, "smoothing": 1.0}],
        trajectories={"count": count, "seed": seed, "store": 4},
    )


def _all_z(res):
    """z-scores of every compared point and their correlation, estimated from the block means."""
    zs, cols = [], []
    blocks = res.trajectory_estimates["blocks"]
    for name, grid in res.volumes.items():
        te = res.trajectory_estimates["volumes"][name]
        zs.append(z_scores(grid["energy"][1:], te["energy"][1:], None, te["energy_stderr"][1:]))
        cols.append(blocks[f"volumes/{name}/energy"][:, 1:])
        for q in WINDOW_TERMS:
            w = res.windows[name][q]
            zs.append(z_scores(w, te[f"window/{q}"], None, te[f"window/{q}_stderr"]))
            cols.append(blocks[f"volumes/{name}/window/{q}"])
    z = np.concatenate(zs)
    finite = np.isfinite(z)
    return z, block_correlation(np.concatenate(cols, axis=1)[:, finite])


@pytest.mark.parametrize("n", [1, 2])
def test_trajectory_estimates_agree_with_grid_values(n):
    """E_Omega at frames and window averages of P_Omega and of each term, for one electron and for
    two interacting fermions in a biased region, sharp and smooth volumes.

    The points share their worlds, so the RMS bound allows for their correlation (estimated from
    the 24 blocks of 64 worlds); the Bonferroni bound on max |z| needs no such allowance."""
    res = ExactSolver(make_config(**_case(n, 1500))).run()
    z, correlation = _all_z(res)
    result = agreement(z, correlation=correlation)
    assert result.n_points > 60
    assert result.ok, str(result)
    # identical fermions in 1D never cross (identity 10)
    assert res.diagnostics["crossings"] == 0


def test_standard_error_falls_like_inverse_square_root_of_samples():
    """Quadrupling the number of worlds halves every standard error (to sampling accuracy of the
    standard error itself: with M >= 400 its relative spread is ~1/sqrt(2M) < 4%)."""
    small = ExactSolver(make_config(**_case(2, 400, t_end=2.0))).run().trajectory_estimates
    large = ExactSolver(make_config(**_case(2, 1600, t_end=2.0))).run().trajectory_estimates
    ratios = []
    for name in ("dev", "soft"):
        for q in ("energy_stderr", "window/power_stderr", "window/field_work_stderr"):
            a, b = small["volumes"][name][q], large["volumes"][name][q]
            ok = (a > 0) & (b > 0)
            ratios.append(np.median(a[ok] / b[ok]))
    assert np.all(np.abs(np.array(ratios) - 2.0) < 0.3), ratios


def test_window_power_equals_its_terms_on_both_sides():
    """The d/dt estimate of P_Omega (the window's energy change) and the sum of the terms agree:
    exactly by construction on the grid side, and on the trajectory side because the quantum term is
    built per world as the change of e_k minus the regular terms (THEORY.md 5.7)."""
    res = ExactSolver(make_config(**_case(2, 300, t_end=2.0))).run()
    for name, w in res.windows.items():
        total = (w["field_work"] + w["interaction"] + w["quantum"] + w["boundary_flux"]
                 - w["absorbed"])
        np.testing.assert_allclose(total, w["power"], atol=1e-12)
        te = res.trajectory_estimates["volumes"][name]
        total = (te["window/field_work"] + te["window/interaction"] + te["window/quantum"]
                 + te["window/boundary_flux"] - te["window/absorbed"])
        np.testing.assert_allclose(total, te["window/power"], atol=1e-12)
        # the window power is the energy change over the window (grid side, exact)
        e = res.volumes[name]["energy"]
        np.testing.assert_allclose(w["power"], np.diff(e) / 0.5, rtol=1e-12, atol=1e-15)


def test_compare_and_plot_commands(tmp_path):
    """`compare` on an exact file with trajectories agrees and draws; a mismatched file is refused."""
    path = write_run_file(tmp_path / "run.toml", run_dict(**_case(2, 600, t_end=2.0)))
    exe = [sys.executable, "-m", "bohmpower"]
    r = subprocess.run([*exe, "exact", path, "-q"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    out = path.with_suffix(".exact.h5")
    fig = tmp_path / "cmp.png"
    r = subprocess.run([*exe, "compare", out, out, "--plot", fig, "--fail-on-disagreement"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "overall: agree" in r.stdout and fig.stat().st_size > 10_000
    r = subprocess.run([*exe, "plot", out, "-o", tmp_path / "p.png"], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 0 and (tmp_path / "p.png").stat().st_size > 10_000
    # a run whose volume has other edges must be refused, exit 2
    other = run_dict(**_case(2, 100, t_end=2.0))
    other["volume"][0]["x_max"] = 3.5
    path2 = write_run_file(tmp_path / "other.toml", other)
    r = subprocess.run([*exe, "exact", path2, "-q"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*exe, "compare", out, path2.with_suffix(".exact.h5")], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 2 and "x_max differs" in r.stderr and "Traceback" not in r.stderr
