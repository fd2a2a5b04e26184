"""Landauer reference (bohmpower.devices.landauer): transfer matrices against analytic results."""

import numpy as np
import pytest
from scipy.optimize import brentq

from bohmpower.devices.landauer import fermi, landauer_current, transmission


def _rect_t(e, v0, a, m):
    """Rectangular barrier of height v0 and width a (textbook formula)."""
    e = np.asarray(e, dtype=float)
    out = np.empty_like(e)
    lo = e < v0
    kap = np.sqrt(2 * m * (v0 - e[lo]))
    out[lo] = 1.0 / (1.0 + v0**2 * np.sinh(kap * a) ** 2 / (4 * e[lo] * (v0 - e[lo])))
    k2 = np.sqrt(2 * m * (e[~lo] - v0))
    out[~lo] = 1.0 / (1.0 + v0**2 * np.sin(k2 * a) ** 2 / (4 * e[~lo] * (e[~lo] - v0)))
    return out


@pytest.mark.parametrize("m", [1.0, 0.067])
def test_rectangular_barrier_matches_formula_and_conserves_flux(m):
    v0, a = 0.3, 2.5
    edges = np.array([-10.0, -a / 2, a / 2, 10.0])
    values = np.array([0.0, v0, 0.0])
    e = np.linspace(0.002, 1.2, 997)
    t, r = transmission(e, edges, values, mass=m)
    np.testing.assert_allclose(t, _rect_t(e, v0, a, m), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(t + r, 1.0, atol=1e-12)


def test_barrier_cut_into_many_cells_is_the_same_barrier():
    # 400 cells of the same height: the product of cell matrices must equal the single-cell result
    v0, a = 0.2, 6.0
    edges = np.concatenate(([-5.0], np.linspace(-a / 2, a / 2, 401), [5.0]))
    values = np.concatenate(([0.0], np.full(400, v0), [0.0]))
    e = np.linspace(0.01, 0.6, 101)
    t, _ = transmission(e, edges, values)
    np.testing.assert_allclose(t, _rect_t(e, v0, a, 1.0), rtol=1e-9)


def test_thick_barrier_does_not_overflow():
    # kappa a ~ 1000: T ~ e^-2000 underflows to 0 cleanly, not NaN
    edges = np.array([-1.0, 0.0, 1000.0, 1001.0])
    t, r = transmission([0.1], edges, np.array([0.0, 0.6, 0.0]))
    assert np.isfinite(t).all() and t[0] < 1e-300 and abs(r[0] - 1) < 1e-12


def test_step_potential():
    v0, m = 0.1, 0.5
    edges = np.array([-3.0, 0.0, 3.0])
    e = np.linspace(0.1001, 2.0, 200)
    t, r = transmission(e, edges, np.array([0.0, v0]), mass=m)
    k1, k2 = np.sqrt(2 * m * e), np.sqrt(2 * m * (e - v0))
    np.testing.assert_allclose(t, 4 * k1 * k2 / (k1 + k2) ** 2, rtol=1e-12)
    np.testing.assert_allclose(r, ((k1 - k2) / (k1 + k2)) ** 2, rtol=1e-10, atol=1e-15)
    # below the step nothing propagates on the right
    t0, _ = transmission([0.05], edges, np.array([0.0, v0]), mass=m)
    assert t0[0] == 0.0


def test_transmission_is_symmetric_for_a_biased_asymmetric_potential():
    rng = np.random.default_rng(3)
    edges = np.linspace(0, 20, 41)
    values = rng.uniform(0, 0.3, 40) - np.linspace(0, 0.1, 40)
    e = np.linspace(0.31, 1.0, 50)
    t_lr, r_lr = transmission(e, edges, values, v_left=0.0, v_right=-0.1)
    t_rl, _ = transmission(e, edges[::-1] * -1, values[::-1], v_left=-0.1, v_right=0.0)
    np.testing.assert_allclose(t_lr, t_rl, rtol=1e-10)
    np.testing.assert_allclose(t_lr + r_lr, 1.0, atol=1e-12)


def test_double_barrier_resonance_at_the_quasi_bound_level():
    # Symmetric double barrier: T reaches 1 at the resonance, which lies near the ground level of the
    # finite well of depth v0 and width w between the barriers (exact in the thick-barrier limit).
    v0, b, w, m = 0.3, 4.0, 6.0, 1.0
    edges = np.array([-20.0, -w / 2 - b, -w / 2, w / 2, w / 2 + b, 20.0])
    values = np.array([0.0, v0, 0.0, v0, 0.0])

    def even(e):  # finite-well ground state: k tan(k w/2) = kappa
        k, kap = np.sqrt(2 * m * e), np.sqrt(2 * m * (v0 - e))
        return k * np.tan(k * w / 2) - kap

    e_well = brentq(even, 1e-6, min(v0, (np.pi / w) ** 2 / (2 * m)) - 1e-9)
    e = np.linspace(0.5 * e_well, 1.5 * e_well, 20001)
    t, r = transmission(e, edges, values, mass=m)
    i = int(np.argmax(t))
    assert t[i] > 0.999
    assert abs(e[i] - e_well) < 0.01 * e_well
    # off resonance the two barriers are far more opaque than at the peak
    assert t[0] < 1e-3 and t[-1] < 1e-3
    np.testing.assert_allclose(t + r, 1.0, atol=1e-10)


def test_fermi_limits():
    assert fermi(0.0, 0.0, 0.01) == pytest.approx(0.5)
    np.testing.assert_allclose(fermi([-10.0, 10.0], 0.0, 0.01), [1.0, 0.0], atol=1e-300)
    np.testing.assert_array_equal(fermi([-1e-3, 1e-3], 0.0, 0.0), [1.0, 0.0])


def test_landauer_current_of_a_perfect_channel():
    # T = 1: J = (g/2 pi) (mu_L - mu_R) at any temperature (the conductance quantum)
    def ones(e):
        return np.ones_like(e)

    for kt in (0.0, 0.003):
        j, _, _ = landauer_current(ones, 0.05, 0.03, kt, band_bottom=-1.0)
        assert j == pytest.approx(0.02 / (2 * np.pi), rel=1e-6)
        j2, _, _ = landauer_current(ones, 0.05, 0.03, kt, band_bottom=-1.0, degeneracy=2)
        assert j2 == pytest.approx(2 * j, rel=1e-12)


def test_landauer_current_of_a_step_transmission_at_zero_temperature():
    # T = 1 above E0 only, mu_R < E0 < mu_L: J = (mu_L - E0)/(2 pi)
    def step(e):
        return (e > 0.04).astype(float)

    j, _, _ = landauer_current(step, 0.05, 0.02, 0.0, band_bottom=0.0, n_energies=300001)
    assert j == pytest.approx(0.01 / (2 * np.pi), rel=1e-4)


def test_numba_kernel_matches_numpy_twin():
    from bohmpower.devices.landauer import transmission_np

    rng = np.random.default_rng(11)
    edges = np.concatenate(([-30.0], np.sort(rng.uniform(-20, 20, 60)), [30.0]))
    values = rng.uniform(-0.05, 0.4, edges.size - 1)
    values[[0, -1]] = [0.0, -0.05]
    e = np.concatenate((np.linspace(-0.1, 1.0, 400), [0.0, 1e-12]))
    t_nb, r_nb = transmission(e, edges, values, 0.3)
    t_np, r_np = transmission_np(e, edges, values, 0.3)
    np.testing.assert_allclose(t_nb, t_np, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(r_nb, r_np, rtol=1e-9, atol=1e-15)
    assert np.all(t_nb[e <= 0] == 0)
