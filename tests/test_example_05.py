"""Example 05 (uniform field sum rule), shrunk for CI: run it, plot it, check the physics."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np

from bohmpower.io import read_result
from tests.conftest import run_example

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "05_uniform_field_sum_rule"




def test_example_05_shrunk(tmp_path: Path) -> None:
    config = tomllib.loads((EXAMPLE / "run.toml").read_text())
    # 4 time units instead of 44, a frame every 5 steps: 21 frames, windows of 1 (25 steps)
    config["time"]["t_end"] = 4.0
    config["time"]["save_every"] = 5
    out = run_example(EXAMPLE, tmp_path, config)

    r = read_result(out, fields=True)
    force = config["field"][0]["force"]
    n = config["particles"]["count"]
    x, t = r["x"], r["time"]
    dx = x[1] - x[0]
    power = r["global"]["power"]
    scale = np.max(np.abs(power))

    # THEORY.md identity 9: P = integral q E J dx = F * integral J dx = F N d<X_cm>/dt. Both sides
    # are the same grid quadrature of the same stored field, so they agree to round-off; 1e-9 leaves
    # room for the summation order only.
    from_current = force * np.sum(r["fields"]["current"], axis=1) * dx
    np.testing.assert_allclose(power, from_current, rtol=0, atol=1e-9 * scale)

    # Ehrenfest: with no U0 the soft Coulomb forces cancel pairwise, so d<P_total>/dt = N F and
    # N <v_cm>(t) = N k0 / m + N F t / m exactly (both packets carry k0; the Slater determinant is
    # exp(i k0 (x1 + x2)) times a real function). The split-operator step conserves momentum
    # to round-off in a uniform field and nothing reaches the absorbers in 4 time units (norm below),
    # so 1e-8 of the scale covers round-off and the packets' negligible tails in the layers.
    k0 = config["initial"]["packet"][0]["wavenumber"]
    assert all(p["wavenumber"] == k0 for p in config["initial"]["packet"])
    mass = config["particles"]["mass"]
    np.testing.assert_allclose(power, force * n * (k0 + force * t) / mass, rtol=0, atol=1e-8 * scale)
    assert abs(r["global"]["norm"][-1] - 1.0) < 1e-10

    # the first moment's frame differences: <X_cm> is exactly quadratic in t (above), so the central
    # difference is exact up to the grid quadrature of x n near the (periodic-interpolant) edges;
    # 1e-7 of the scale is far below the 1e-3 an O(h^2) error would give at h = 0.2
    moment = np.sum(r["fields"]["density"] * x, axis=1) * dx
    velocity = (moment[2:] - moment[:-2]) / (t[2:] - t[:-2])
    np.testing.assert_allclose(force * velocity, power[1:-1], rtol=0, atol=1e-7 * scale)

    for name, vol in r["volumes"].items():
        win = vol["window"]
        total = (win["field_work"] + win["interaction"] + win["quantum"] + win["boundary_flux"]
                 - win["absorbed"])
        wscale = max(np.max(np.abs(win[k])) for k in ("power", "field_work", "boundary_flux"))
        # the window balance holds exactly (docs/result-file.md: both sides accumulated every step)
        np.testing.assert_allclose(win["power"], total, rtol=0, atol=1e-9 * wscale, err_msg=name)
        # the quantum term splits into its surface and non-local parts
        np.testing.assert_allclose(win["quantum"], win["quantum_flux"] + win["quantum_nonlocal"],
                                   rtol=0, atol=1e-12 * wscale, err_msg=name)

    # whole cell: the pair forces cancel (P_C = 0 pair by pair), no flux through the grid ends, so
    # the cell's power is the global field work; 1e-9 of the field work is round-off level
    cell = r["volumes"]["cell"]["data"]
    fw = np.max(np.abs(cell["field_work"]))
    assert np.max(np.abs(cell["interaction"])) < 1e-9 * fw
    assert np.max(np.abs(cell["boundary_flux"])) < 1e-9 * fw
    np.testing.assert_allclose(cell["field_work"], power, rtol=0, atol=1e-9 * scale)

    # the finite volume: the non-field terms are not small (THEORY.md section 3): at t = 0 the
    # window-averaged boundary flux exceeds the field work there, and the interaction term is a
    # sizeable fraction of it
    dev = r["volumes"]["device"]["window"]
    assert abs(dev["boundary_flux"][0]) > abs(dev["field_work"][0])
    assert abs(dev["interaction"][0]) > 0.1 * abs(dev["field_work"][0])
