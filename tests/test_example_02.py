"""Example 02 (two interacting electrons, exact against CW), shrunk for CI: run, plot, check the physics."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np

from bohmpower.compare import compare_files
from bohmpower.io import read_result
from tests.conftest import write_run_file

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "02_two_electrons_exact_vs_cw"
TERMS = ("field_work", "interaction", "quantum", "boundary_flux")


def _shrunk(name: str, tmp_path: Path) -> Path:
    config = tomllib.loads((EXAMPLE / name).read_text())
    # t_end = 8 instead of 30 (160 steps): the packets (edges of the device at -/+10, packets at -/+16,
    # width 2.5, |k| = 1.1) are entering the biased region, so every device term is non-zero
    config["time"]["t_end"] = 8.0
    if "trajectories" in config:
        config["trajectories"]["count"] = 200
    path = tmp_path / name
    write_run_file(path, config)
    return path


def _run(command: str, run: Path) -> Path:
    out = run.with_suffix(".h5")
    subprocess.run([sys.executable, "-m", "bohmpower", command, str(run), "-o", str(out), "-q"],
                   check=True, cwd=run.parent)
    return out


def test_example_02_shrunk(tmp_path: Path) -> None:
    for name in ("exact.toml", "cw.toml", "cw_exchange.toml"):
        config = tomllib.loads((EXAMPLE / name).read_text())
        assert config["particles"]["count"] == 2 and config["particles"]["statistics"] == "fermion"
        assert "interaction" in config
    assert tomllib.loads((EXAMPLE / "cw.toml").read_text())["method"]["exchange"] is False
    assert tomllib.loads((EXAMPLE / "cw_exchange.toml").read_text())["method"]["exchange"] is True

    exact = _run("exact", _shrunk("exact.toml", tmp_path))
    cws = [_run("run", _shrunk(name, tmp_path)) for name in ("cw.toml", "cw_exchange.toml")]
    plotted = subprocess.run([sys.executable, str(EXAMPLE / "plot.py"), str(exact), *map(str, cws)],
                             check=True, capture_output=True, text=True)
    png = exact.with_suffix(".png")
    assert png.exists() and png.stat().st_size > 20_000, plotted.stdout

    r = read_result(exact, fields=True)
    dev = r["volumes"]["device"]["window"]
    cell = r["volumes"]["cell"]["window"]
    fw_dev = np.max(np.abs(dev["field_work"]))
    fw_cell = np.max(np.abs(cell["field_work"]))
    assert fw_dev > 0.0 and fw_cell > 0.0

    # whole cell (THEORY.md section 3): P_C vanishes pair by pair (W' odd) and P_B has no edge inside the
    # cell; both are computed directly, so they are zero to round-off: 1e-8 of the field work
    assert np.max(np.abs(cell["interaction"])) < 1e-8 * fw_cell
    assert np.max(np.abs(cell["boundary_flux"])) < 1e-8 * fw_cell
    # P_S + P_N also integrates to zero over the whole cell, but the stored P_N is the balance
    # P_Omega - P_J - P_C - P_S - P_B + A (THEORY.md section 3), whose P_Omega is the energy difference
    # across the window and P_J the step sum: it carries the O(dt^2) time-discretisation error of that
    # balance. Measured 3e-4 of max |P_J| over the full run (dt = 0.05); 1e-3 still fails if any term
    # lost a factor or a sign (the device's P_N, a physical term, is about 1e-1 of its P_J).
    assert np.max(np.abs(cell["quantum_nonlocal"])) < 1e-3 * fw_cell
    assert np.max(np.abs(cell["quantum"])) < 1e-3 * fw_cell
    # the finite volume: the boundary flux, the non-local quantum term and the interaction correlation
    # are not negligible next to the field work (the boundary flux exceeds it several times over)
    assert max(np.max(np.abs(dev[k])) for k in ("interaction", "quantum_nonlocal", "boundary_flux")) \
        > 0.1 * fw_dev
    # the interaction correlation is non-zero there (the pair sits across the volume's edge)
    assert np.max(np.abs(dev["interaction"])) > 1e3 * np.max(np.abs(cell["interaction"]))

    for path in cws:
        c = read_result(path)
        for name, vol in c["volumes"].items():
            win = vol["window"]
            scale = max(np.max(np.abs(win[k])) for k in ("power", *TERMS))
            assert scale > 0.0, name
            # the CW window terms add up to the CW window power: the same balance, accumulated on
            # every world every step, so it holds to summation round-off (1e-9 of the largest term)
            total = sum(win[k] for k in TERMS) - win["absorbed"]
            np.testing.assert_allclose(win["power"], total, rtol=0, atol=1e-9 * scale,
                                       err_msg=f"{path.name} {name}")
        # whole cell on trajectories: P_C cancels pair by pair in every world and no world crosses the
        # cell's ends (the grid's ends), so both are zero to round-off there too
        cw_cell = c["volumes"]["cell"]["window"]
        assert np.max(np.abs(cw_cell["interaction"])) < 1e-8 * fw_cell, path.name
        assert np.max(np.abs(cw_cell["boundary_flux"])) < 1e-8 * fw_cell, path.name

        # grid values against the CW estimates: the comparison runs and covers both volumes; agreement
        # is not asserted (docs/accuracy.md: zeroth-order CW misses the quantum term where fermion
        # packets overlap without exchange, and breaks energy conservation with exchange and interaction)
        comparison = compare_files(exact, path)
        assert comparison.overall.n_points > 0
