"""End-to-end physics of the exact solver (run file -> model -> propagator -> observables).

Each test states the analytic result or THEORY.md identity it checks and why its tolerance holds.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from bohmpower.driver import ExactSolver
from tests.conftest import make_config


def simpson_cumulative(y, dt):
    """Cumulative integral of equally spaced samples, O(dt^4) at even indices (trapezoid at odd)."""
    out = np.zeros_like(y)
    for i in range(1, len(y)):
        if i % 2 == 0:
            out[i] = out[i - 2] + dt / 3 * (y[i - 2] + 4 * y[i - 1] + y[i])
        else:
            out[i] = out[i - 1] + dt / 2 * (y[i - 1] + y[i])
    return out


# --- uniform field on one free packet (REFERENCE_VALUES.md) -------------------------------------


def test_uniform_field_power_and_energy_gain():
    """P(t) = F (v0 + F t / m), Delta E = F v0 t + F^2 t^2 / (2m) for any packet, no interaction.

    With a linear potential Ehrenfest's theorem closes: <p> grows by exactly F dt per split-operator
    step (the kinetic phase commutes with p, the potential kick adds F dt), so the only errors are
    round-off and the packet's tail on the finite grid (kept below 1e-12 by the grid size).
    """
    F, m, k0 = 0.02, 1.0, 0.5
    cfg = make_config(
        grid={"x_min": -80.0, "x_max": 80.0, "points": 512, "boundary": "absorbing",
              "absorber_width": 15.0},
        time={"dt": 0.05, "t_end": 10.0, "save_every": 20},
        field=[{"kind": "uniform", "force": F, "origin": 0.0}],
        initial={"packet": [{"center": -10.0, "width": 3.0, "wavenumber": k0}]},
    )
    res = ExactSolver(cfg).run()
    t = res.time
    v0 = k0 / m
    np.testing.assert_allclose(res.globals["power"], F * (v0 + F * t / m), rtol=1e-9, atol=1e-13)
    gained = res.globals["energy"] - res.globals["energy"][0]
    np.testing.assert_allclose(gained, F * v0 * t + F**2 * t**2 / (2 * m), rtol=1e-8, atol=1e-12)
    # chi = 0: the whole-space power is the field's work and nothing else.
    np.testing.assert_allclose(res.globals["total_power"], res.globals["power"], atol=1e-10)


# --- Kohn's theorem (THEORY.md identity 9) --------------------------------------------------------


@pytest.mark.parametrize("statistics", ["fermion", "distinguishable"])
def test_kohn_theorem_driven_harmonic_two_interacting_electrons(statistics):
    """In a harmonic U0 a uniform field moves <X_cm> like the classical driven oscillator, whatever
    the interaction; and the total power is q E(t) N d<X_cm>/dt (identity 9).

    The centre of mass separates exactly in the Hamiltonian, and the split-operator steps respect
    that separation only up to the O(dt^2) splitting error of the centre-of-mass motion, so the
    tolerance is set by dt = 0.01: (omega dt)^2 ~ 1e-4 relative phase error over ~1.5 periods.
    """
    omega, F, Omega = 0.5, 0.05, 0.4
    cfg = make_config(
        particles={"count": 2, "mass": 1.0, "statistics": statistics},
        grid={"x_min": -20.0, "x_max": 20.0, "points": 96, "boundary": "absorbing",
              "absorber_width": 4.0},
        time={"dt": 0.01, "t_end": 20.0, "save_every": 100},
        potential=[{"kind": "harmonic", "center": 0.0, "omega": omega}],
        interaction={"kind": "soft_coulomb", "softening": 1.0},
        field=[{"kind": "uniform", "force": F, "origin": 0.0, "time_profile": "sine",
                "frequency": Omega / (2 * np.pi)}],
        initial={"packet": [{"center": -1.5, "width": 1.2, "wavenumber": 0.2},
                            {"center": 1.5, "width": 1.2, "wavenumber": -0.1}]},
        volume=[{"name": "left", "x_min": -8.0, "x_max": 0.0}],
    )
    solver = ExactSolver(cfg)
    x = solver.model.grid.x
    res = solver.run()
    n = res.fields["density"]
    dx = x[1] - x[0]
    xcm = (n * x).sum(axis=1) * dx / 2
    jcm = res.fields["current"].sum(axis=1) * dx / 2  # d<X_cm>/dt = (1/N) int J

    def rhs(t, y):
        return [y[1], -omega**2 * y[0] + F * np.sin(Omega * t)]

    sol = solve_ivp(rhs, (0, res.time[-1]), [xcm[0], jcm[0]], t_eval=res.time, rtol=1e-12,
                    atol=1e-12, method="DOP853")
    np.testing.assert_allclose(xcm, sol.y[0], atol=2e-4)
    np.testing.assert_allclose(jcm, sol.y[1], atol=2e-4)
    # identity 9: P_total = qE(t) N d<X_cm>/dt, with qE = F sin(Omega t)
    np.testing.assert_allclose(res.globals["power"], F * np.sin(Omega * res.time) * 2 * jcm,
                               atol=1e-10)


# --- identities 1, 3, 5 and 10 through the whole pipeline, N = 1, 2, 3 ----------------------------


def _driven_case(n, points, dt=0.02, t_end=0.8, save_every=1, half_length=20.0):
    # Packets stay > 6 widths away from the periodic return field around the seam, whose edges
    # (width ell/24) the test grids do not resolve.
    packets = [{"center": -3.0, "width": 1.0, "wavenumber": 0.6},
               {"center": 0.5, "width": 1.0, "wavenumber": -0.3},
               {"center": 3.5, "width": 1.0, "wavenumber": 0.1}][:n]
    return make_config(
        particles={"count": n, "mass": 1.0, "statistics": "fermion"},
        grid={"x_min": -half_length, "x_max": half_length, "points": points,
              "boundary": "periodic"},
        time={"dt": dt, "t_end": t_end, "save_every": save_every},
        potential=[{"kind": "gaussian", "center": 0.0, "width": 1.5, "height": 0.3}],
        interaction={"kind": "soft_coulomb", "softening": 1.0},
        field=[{"kind": "linear_drop", "bias": 0.2, "x_left": -6.0, "x_right": 6.0,
                "smoothing": 1.0, "time_profile": "sine", "frequency": 0.3}],
        initial={"packet": packets},
        volume=[{"name": "sharp", "x_min": -2.0, "x_max": 3.0},
                {"name": "smooth", "x_min": -7.0, "x_max": -1.0, "smoothing": 0.8}],
    )


@pytest.mark.parametrize("n,points,half_length", [(1, 128, 20.0), (2, 128, 20.0), (3, 80, 12.8)])
def test_energy_balance_and_local_power_identities(n, points, half_length):
    """Identity 1: E(t) - E(0) = int (P_field - P_absorbed) dt; identity 2 over all space;
    identity 3: the exact local power equals the time derivative of E_Omega; identity 10.

    dE/dt is taken by a fourth-order central difference of frames one step apart and the integral by
    Simpson's rule, both O(dt^4), so the mismatches measure the propagator's O(dt^2) splitting error.
    Measured (scripts/run_slow_tests.sh shows the order 2.0): identity 1 mismatch / (dt^2 t_end) =
    2.4e-3 (N=1), 6.3e-3 (N=2), 3.8e-3 (N=3); identity 3 mismatch / dt^2 = 4.7e-3 .. 7.5e-3 hartree
    per time unit. The bounds below are about three times those constants.
    """
    cfg = _driven_case(n, points, half_length=half_length)
    solver = ExactSolver(cfg)
    res = solver.run()
    dt = cfg.time.dt
    g = res.globals
    gained = g["energy"] - g["energy"][0]
    work = simpson_cumulative(g["total_power"], dt)
    assert np.abs(gained - work)[::2].max() < 0.02 * dt**2 * res.time[-1]
    # Whole space (identity 2): the grid's H and the h_k on the refined grid differ by aliasing
    # only, which falls exponentially with 1/dx (measured relative to the power: 5e-15 for N = 1,
    # 1e-8 for N = 2 at dx = 0.31, 5e-8 for N = 3 at dx = 0.32; 3e-7 for N = 2 at dx = 0.5).
    np.testing.assert_allclose(g["total_power"], g["power"] - g["absorbed_power"],
                               atol=2e-7 * np.abs(g["power"]).max())
    for name, vol in res.volumes.items():
        e = vol["energy"]
        de = (e[:-4] - 8 * e[1:-3] + 8 * e[3:-1] - e[4:]) / (12 * dt)
        p = vol["power"][2:-2]
        assert np.abs(de - p).max() < 0.025 * dt**2, name
        # the balance that defines quantum_nonlocal reproduces power to round-off
        total = (vol["field_work"] + vol["interaction"] + vol["quantum_flux"]
                 + vol["quantum_nonlocal"] + vol["boundary_flux"] - vol["absorbed"])
        np.testing.assert_allclose(total, vol["power"], atol=1e-12 * np.abs(p).max() + 1e-15)
    # identity 10: antisymmetry of the final state under every transposition
    psi = solver.psi
    for a in range(n):
        for b in range(a + 1, n):
            swapped = np.swapaxes(psi, a, b)
            assert np.linalg.norm(psi + swapped) / np.linalg.norm(psi) < 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("n,points", [(1, 128), (2, 128)])
def test_local_power_error_converges_at_second_order_in_dt(n, points):
    """The measured order that justifies the tolerances above: halving dt divides both the
    dE_Omega/dt-versus-power mismatch and the energy-balance mismatch by ~4."""
    local, balance = [], []
    for dt in (0.04, 0.02, 0.01):
        cfg = _driven_case(n, points, dt=dt, t_end=0.8)
        res = ExactSolver(cfg).run()
        e = res.volumes["sharp"]["energy"]
        de = (e[:-4] - 8 * e[1:-3] + 8 * e[3:-1] - e[4:]) / (12 * dt)
        local.append(np.abs(de - res.volumes["sharp"]["power"][2:-2]).max())
        g = res.globals
        work = simpson_cumulative(g["total_power"], dt)
        balance.append(np.abs(g["energy"] - g["energy"][0] - work)[::2].max())
    for errors in (local, balance):
        orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
        assert np.all(np.abs(orders - 2) < 0.2), orders


# --- many-body eigenstates through the run file (REFERENCE_VALUES.md) -----------------------------


@pytest.mark.parametrize("statistics, reference", [("distinguishable", -2.238258),
                                                   ("fermion", -1.816070)])
def test_helium_many_body_state_is_stationary(statistics, reference):
    """1D soft-Coulomb helium from `[initial] many_body_state = 0`: the initial internal energy is
    the published value; every power term of the real eigenstate is zero in every volume
    (identity 6 for an interacting state); and under propagation the terms stay at the size of the
    splitting error, O(dt^2): the grid eigenstate is stationary under the exact flow but not
    exactly under the Strang map (measured 1.4e-5, 3.5e-6, 8.8e-7 at dt = 0.02, 0.01, 0.005).

    Grid: 128 points on [-12, 12) (dx = 0.19); the eigenvalue converges to ~1e-6 there (the
    eigen tests show 2e-6 on comparable grids), so 2e-5 leaves room for the grid error only.
    """
    peak = []
    for dt in (0.02, 0.01):
        cfg = make_config(
            particles={"count": 2, "mass": 1.0, "statistics": statistics},
            grid={"x_min": -12.0, "x_max": 12.0, "points": 128, "boundary": "periodic"},
            time={"dt": dt, "t_end": 0.2, "save_every": int(round(0.1 / dt))},
            potential=[{"kind": "soft_coulomb_well", "center": 0.0, "charge": 2.0,
                        "softening": 1.0}],
            interaction={"kind": "soft_coulomb", "softening": 1.0},
            initial={"many_body_state": 0},
            volume=[{"name": "half", "x_min": 0.0, "x_max": 12.0},
                    {"name": "core", "x_min": -1.5, "x_max": 2.0, "smoothing": 0.4}],
        )
        res = ExactSolver(cfg).run()
        np.testing.assert_allclose(res.globals["energy"][0], reference, atol=2e-5)
        terms = ("power", "field_work", "interaction", "quantum_flux", "quantum_nonlocal",
                 "boundary_flux", "particle_flux")
        for name, vol in res.volumes.items():
            for q in terms:
                assert abs(vol[q][0]) < 1e-12, (name, q, vol[q][0])
        peak.append(max(np.abs(vol[q]).max() for vol in res.volumes.values() for q in terms))
    assert 3.5 < peak[0] / peak[1] < 4.5, peak


def test_harmonium_many_body_state_energy():
    """Harmonium (w = lam = 1): lowest state of spinless fermions (w + 3 sqrt(w^2 + 2 lam))/2."""
    cfg = make_config(
        particles={"count": 2, "mass": 1.0, "statistics": "fermion"},
        grid={"x_min": -8.0, "x_max": 8.0, "points": 96, "boundary": "periodic"},
        time={"dt": 0.002, "t_end": 0.004, "save_every": 1},
        potential=[{"kind": "harmonic", "center": 0.0, "omega": 1.0}],
        interaction={"kind": "harmonic", "strength": 1.0},
        initial={"many_body_state": 0},
        # The harmonic interaction's W_max over the cell (strength L^2 / 2 = 128 hartree) enters
        # the resolution rules, hence the fine grid and small dt; [numerics] resolution_fraction
        # = 1 (its largest allowed value) accepts dx = 0.167.
        numerics={"resolution_fraction": 1.0},
        volume=[{"name": "right", "x_min": 0.0, "x_max": 4.0}],
    )
    res = ExactSolver(cfg).run()
    np.testing.assert_allclose(res.globals["energy"][0], (1 + 3 * np.sqrt(3)) / 2, atol=1e-7)
