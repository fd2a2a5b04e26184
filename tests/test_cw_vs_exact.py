"""Conditional-wavefunction ensembles against the exact solver, through the whole pipeline.

Where the CW method is exact (THEORY.md section 5, item 8: one electron, or non-interacting
distinguishable electrons in a product state; and non-interacting fermions with exchange), its
E_Omega and window averages of P_Omega and of each term must agree with the exact grid values
within the statistical bounds of SPEC.md (RMS of z with the blocks' correlation, Bonferroni on
max |z|), through the same `compare` code users run.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bohmpower.compare import compare_files
from tests.conftest import REPO, run_dict, write_run_file


def _case(statistics, exchange, interaction=None, samples=1024):
    d = run_dict(
        particles={"count": 2, "mass": 1.0, "statistics": statistics},
        grid={"x_min": -40.0, "x_max": 40.0, "points": 256, "boundary": "periodic"},
        time={"dt": 0.05, "t_end": 4.0, "save_every": 10},
        potential=[{"kind": "gaussian", "center": 0.0, "width": 1.5, "height": 0.3}],
        field=[{"kind": "linear_drop", "bias": 0.2, "x_left": -6.0, "x_right": 6.0,
                "smoothing": 1.0, "time_profile": "sine", "frequency": 0.1}],
        initial={"packet": [{"center": -5.0, "width": 1.5, "wavenumber": 0.8},
                            {"center": 4.0, "width": 1.5, "wavenumber": -0.5}]},
        volume=[{"name": "dev", "x_min": -3.0, "x_max": 3.0},
                {"name": "soft", "x_min": -9.0, "x_max": -1.0, "smoothing": 1.0}],
        trajectories={"count": samples, "seed": 77, "store": 2},
        method={"exchange": exchange},
    )
    if interaction:
        d["interaction"] = interaction
    return d


def _run_both(tmp_path, data):
    exact = dict(data)
    exact.pop("method")
    exact.pop("trajectories")
    pe = write_run_file(tmp_path / "exact.toml", exact)
    pc = write_run_file(tmp_path / "cw.toml", data)
    exe = [sys.executable, "-m", "bohmpower"]
    for cmd, path in (("exact", pe), ("run", pc)):
        r = subprocess.run([*exe, cmd, path, "-q"], capture_output=True, text=True, cwd=REPO,
                           timeout=600)
        assert r.returncode == 0, r.stderr
    return compare_files(pe.with_suffix(".exact.h5"), pc.with_suffix(".cw.h5"))


@pytest.mark.parametrize("statistics, exchange", [("distinguishable", False), ("fermion", True)])
def test_cw_is_exact_without_interaction(tmp_path, statistics, exchange):
    cmp = _run_both(tmp_path, _case(statistics, exchange))
    # 2 volumes x (9 frames x 2 + 8 windows x 4 non-zero terms): P_C and A_Omega are 0 in both
    # files (no interaction, no layers) and have nothing to judge
    assert cmp.overall.n_points == 100
    assert cmp.overall.ok, cmp.table()
