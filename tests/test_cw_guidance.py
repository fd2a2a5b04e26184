"""Guidance of conditional-wavefunction worlds: analytic Gaussian v and Q, the cofactor initial CW against
the slice of the grid determinant, the exchange ratios against direct determinants, the cofactors, the
Lagrange stencil, and per-electron bookkeeping identities."""

from __future__ import annotations

import numpy as np
import pytest

from bohmpower.cw.guidance import (
    PointPotentials,
    cofactors,
    exchange_ratios,
    guidance_ratios,
    health_measures,
    initial_conditional_wavefunctions,
    lagrange_interpolate,
    layout,
    plain_ratios,
    relative_density,
    trig_interpolate,
    velocity_and_quantum_potential,
)
from bohmpower.cw.propagator import ConditionalPropagator
from bohmpower.model.initial import many_body_product, normalise, packet
from bohmpower.model.interaction import Interaction


def grid(x_min, length, n_x):
    return x_min + np.arange(n_x) * (length / n_x)


def propagator(x, mass=1.0):
    return ConditionalPropagator(x, mass, np.zeros(x.size), None, None, None, None, 0.01)


# --------------------------------------------------------------------------------------------- v and Q
def test_gaussian_velocity_and_quantum_potential():
    """psi = exp(-a (x-x0)^2 + i k x + i b (x-x0)^2): v = (k + 2 b (x-x0))/m, Q = (a - 2 a^2 (x-x0)^2)/m,
    whatever psi's norm and global phase."""
    x = grid(-20.0, 40.0, 512)
    a, b, k, x0, m = 0.15, 0.07, 0.6, 1.0, 1.7
    psi = np.exp(-a * (x - x0) ** 2 + 1j * k * x + 1j * b * (x - x0) ** 2)
    X = np.array([[-2.31], [0.123], [1.0], [2.777], [4.05]])
    prop = propagator(x, m)
    owner = layout(1, False)
    for scale in (1.0, 3.7 * np.exp(0.4j), 1e-30):
        r1, r2, _, _ = guidance_ratios(prop, np.ascontiguousarray((scale * psi)[None, None].repeat(5, 0)),
                                       X, owner, False)
        v, q = velocity_and_quantum_potential(r1, r2, m)
        d = X - x0
        # the propagator's 12-point stencil on dx = 0.078 reads this smooth Gaussian's psi'' to ~1e-12
        # (measured 1e-12 in Q, 2e-14 in v); 1e-10 leaves room for round-off at other scales only
        assert np.allclose(v, (k + 2 * b * d) / m, atol=1e-10, rtol=0)
        assert np.allclose(q, (a - 2 * a * a * d * d) / m, atol=1e-10, rtol=0)


def test_plain_ratios_are_log_derivatives():
    vals = np.array([[2.0 + 1j, -0.5j]])
    r1, r2 = plain_ratios(vals, vals * (0.3 - 0.2j), vals * 4.0)
    assert np.allclose(r1, 0.3 - 0.2j) and np.allclose(r2, 4.0)


# --------------------------------------------------------------------------------------------- initial CW
ORBS = ((-3.0, 1.2, 0.7), (0.5, 1.0, -0.4), (3.5, 1.4, 0.2))


def orbitals(x, n):
    dx = x[1] - x[0]
    return normalise(np.array([packet(x, c, w, k) for c, w, k in ORBS[:n]]), dx)


def same_up_to_constant(f, g):
    """max |f - c g| / max |f| with the least-squares c."""
    c = np.vdot(g, f) / np.vdot(g, g)
    return np.max(np.abs(f - c * g)) / np.max(np.abs(f))


def test_cofactor_cw_is_slice_of_grid_determinant_on_grid():
    x = grid(-10.0, 20.0, 32)
    phi = orbitals(x, 3)
    psi0 = many_body_product(phi, "fermion", x[1] - x[0])
    idx = np.array([[9, 15, 22], [12, 17, 20]])
    X = x[idx]
    cw, owner = initial_conditional_wavefunctions(phi, x, X, "fermion", False)
    assert owner.tolist() == [0, 1, 2]
    for b in range(2):
        i, j, k = idx[b]
        slices = (psi0[:, j, k], psi0[i, :, k], psi0[i, j, :])
        for a in range(3):
            # both are the same sum of products of grid values: agreement to round-off
            assert same_up_to_constant(slices[a], cw[b, a]) < 1e-12


def test_cofactor_cw_is_slice_off_grid():
    """Off the grid the slice of the grid determinant is its trigonometric interpolant along the other
    axis, which for a determinant of band-limited orbitals is exact."""
    x = grid(-10.0, 20.0, 48)
    phi = orbitals(x, 2)
    psi0 = many_body_product(phi, "fermion", x[1] - x[0])
    X = np.array([[-1.37, 2.91]])
    cw, _ = initial_conditional_wavefunctions(phi, x, X, "fermion", False)
    slice0 = trig_interpolate(psi0, x, X[:, 1])[0]  # Psi0(x, X_1): rows of psi0 interpolated along axis 1
    slice1 = trig_interpolate(psi0.T, x, X[:, 0])[0]  # Psi0(X_0, x)
    assert same_up_to_constant(slice0, cw[0, 0]) < 1e-12
    assert same_up_to_constant(slice1, cw[0, 1]) < 1e-12


def test_product_and_exchange_layouts():
    x = grid(-10.0, 20.0, 32)
    phi = orbitals(x, 3)
    X = np.array([[-3.0, 0.0, 3.0]])
    cw, owner = initial_conditional_wavefunctions(phi, x, X, "distinguishable", False)
    assert np.allclose(cw[0], phi) and owner.tolist() == [0, 1, 2]
    cw, owner = initial_conditional_wavefunctions(phi, x, X, "fermion", True)
    assert owner.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert np.array_equal(cw[0].reshape(3, 3, -1), np.broadcast_to(phi, (3, 3, 32)))


# --------------------------------------------------------------------------------------------- exchange
def analytic_orbital(xx, c, w, k, deriv):
    """SPEC packet and its first two derivatives, analytic."""
    g = packet(xx, c, w, k)
    lg1 = -(xx - c) / (2 * w * w) + 1j * k
    if deriv == 0:
        return g
    if deriv == 1:
        return g * lg1
    return g * (lg1 * lg1 - 1 / (2 * w * w))


def test_exchange_ratios_equal_determinant_derivatives():
    """r1_a = d_a det / det and r2_a = d_a^2 det / det computed with np.linalg.det on analytic orbitals."""
    rng = np.random.default_rng(3)
    n = 3
    X = rng.uniform(-4, 4, size=(6, n))
    vals = np.empty((6, n * n, n), dtype=complex)
    d1 = np.empty_like(vals)
    d2 = np.empty_like(vals)
    for a in range(n):
        for j, (c, w, k) in enumerate(ORBS):
            vals[:, a * n + j] = analytic_orbital(X, c, w, k, 0)
            d1[:, a * n + j] = analytic_orbital(X, c, w, k, 1)
            d2[:, a * n + j] = analytic_orbital(X, c, w, k, 2)
    r1, r2, z = exchange_ratios(vals, d1, d2, n)
    for b in range(6):
        A = np.array([[analytic_orbital(X[b, kk], *ORBS[j], 0) for j in range(n)] for kk in range(n)])
        det = np.linalg.det(A)
        for a in range(n):
            for r, dd in ((r1, 1), (r2, 2)):
                Ad = A.copy()
                Ad[a] = [analytic_orbital(X[b, a], *ORBS[j], dd) for j in range(n)]
                assert r[b, a] == pytest.approx(np.linalg.det(Ad) / det, rel=1e-10)
    # relative density: |Psi_a(X_a)|^2 / max |Psi_a|^2 through z, against the explicit slice
    x = grid(-12.0, 24.0, 256)
    phi = np.array([packet(x, c, w, k) for c, w, k in ORBS])
    psi = np.broadcast_to(np.tile(phi, (n, 1)), (6, n * n, x.size)).copy()
    rel = relative_density(psi, z=z)
    for b in range(6):
        A = np.array([[analytic_orbital(X[b, kk], *ORBS[j], 0) for j in range(n)] for kk in range(n)])
        cof = cofactors(A[None])[0]
        for a in range(n):
            sl = cof[a] @ phi  # slice through the world, up to a constant
            at = cof[a] @ A[a]  # its value at X_a
            assert rel[b, a] == pytest.approx(abs(at) ** 2 / np.max(np.abs(sl) ** 2), rel=1e-9)


def test_exchange_and_cofactor_guidance_agree_at_start():
    """At t = 0 both layouts describe the same Psi0: the same v and Q for every electron."""
    x = grid(-12.0, 24.0, 256)
    phi = orbitals(x, 3)
    X = np.array([[-2.9, 0.3, 3.1], [-1.0, 1.7, 4.4]])
    prop = propagator(x)
    out = []
    for exchange in (False, True):
        psi, owner = initial_conditional_wavefunctions(phi, x, X, "fermion", exchange)
        r1, r2, _, _ = guidance_ratios(prop, psi, X, owner, exchange)
        out.append(velocity_and_quantum_potential(r1, r2, 1.0))
    # the two routes read different CWs through the same 12-point stencil: ~1e-9 here
    assert np.allclose(out[0][0], out[1][0], atol=1e-8)
    assert np.allclose(out[0][1], out[1][1], atol=1e-8)


def test_singular_slater_matrix_gives_nan_z():
    vals = np.ones((2, 4, 2), dtype=complex)  # world 0: all orbitals equal -> singular
    vals[1] = [[1, 2], [3, 4], [1, 2], [3, 4]]  # world 1: regular, A^a = [[1, 3], [2, 4]]
    r1, _r2, z = exchange_ratios(vals, vals, vals, 2)
    assert np.all(np.isnan(z[0])) and np.all(np.isfinite(z[1]))
    assert np.allclose(r1[1], 1.0)  # d1 = values -> d Psi / Psi = 1


# --------------------------------------------------------------------------------------------- cofactors
def test_cofactors_regular_and_singular():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4))
    cof = cofactors(A[None])[0]
    ref = np.linalg.det(A) * np.linalg.inv(A).T
    c = ref[0, 0] / cof[0, 0]
    assert abs(abs(c) - np.abs(c)) < 1e-12 and c.real > 0 and abs(c.imag) < 1e-9 * abs(c)
    assert np.allclose(cof * c, ref, rtol=1e-10, atol=0)
    # rank N-1: cofactors from explicit minors
    S = A.copy()
    S[2] = 0.3 * S[0] - 1.1j * S[1]
    cof = cofactors(S[None])[0]
    minors = np.array([[(-1) ** (i + j) * np.linalg.det(np.delete(np.delete(S, i, 0), j, 1))
                        for j in range(4)] for i in range(4)])
    c = np.vdot(cof.ravel(), minors.ravel()) / np.vdot(cof.ravel(), cof.ravel())
    assert np.allclose(cof * c, minors, atol=1e-10 * np.abs(minors).max())


# --------------------------------------------------------------------------------------------- stencil
def test_lagrange_exact_for_degree_seven_polynomials():
    x = grid(-10.0, 20.0, 64)
    dx = x[1] - x[0]
    coef = np.array([0.3, -1.0, 0.2, 0.05, -0.01, 0.002, 1e-4, -2e-5])
    f = np.polynomial.polynomial.polyval(x, coef)
    pts = np.array([-3.3, 0.0, 0.77, 4.999])  # stencils stay inside the cell (no periodic wrap)
    val = lagrange_interpolate(f, x[0], dx, pts)
    der = lagrange_interpolate(f, x[0], dx, pts, deriv=True)
    assert np.allclose(val, np.polynomial.polynomial.polyval(pts, coef), rtol=1e-11)
    dcoef = np.polynomial.polynomial.polyder(coef)
    assert np.allclose(der, np.polynomial.polynomial.polyval(pts, dcoef), rtol=1e-10)
    assert np.isnan(lagrange_interpolate(f, x[0], dx, np.array([np.nan]))[0])


def test_trig_interpolate_exact_for_band_limited():
    x = grid(-5.0, 10.0, 16)
    f = np.exp(2j * np.pi * 3 * (x + 5) / 10) + np.cos(2 * np.pi * 8 * (x + 5) / 10)  # includes Nyquist
    pts = np.array([-4.1, 0.3, 2.2])
    ref = np.exp(2j * np.pi * 3 * (pts + 5) / 10) + np.cos(2 * np.pi * 8 * (pts + 5) / 10)
    assert np.allclose(trig_interpolate(f[None], x, pts)[:, 0], ref, atol=1e-13)


# --------------------------------------------------------------------------------------------- bookkeeping
class FakeDrive:
    """q phi = f(t) g(x) with g = 0.2 x^2 - x, f = sin t."""

    def potential(self, x):
        return 0.2 * np.asarray(x) ** 2 - np.asarray(x)

    def force(self, x):
        return -(0.4 * np.asarray(x) - 1.0)

    def profile(self, t):
        return np.sin(t)

    def profile_dt(self, t):
        return np.cos(t)


@pytest.mark.parametrize("chi", [False, True])
def test_point_potentials_identities(chi):
    x = grid(-10.0, 20.0, 64)
    inter = Interaction("soft_coulomb", softening=1.0)
    pp = PointPotentials(x[0], x[1] - x[0], 0.1 * x**2, np.zeros(64), (FakeDrive(),), inter.w, inter.dw,
                         chi, 1.0)
    rng = np.random.default_rng(1)
    X = rng.uniform(-5, 5, size=(7, 4))
    v = rng.normal(size=(7, 4))
    q = rng.normal(size=(7, 4))
    t = 0.7
    ev = pp.evaluate(X, v, q, t)
    # Newton's third law and P_C summing to zero pair by pair (THEORY.md section 3)
    assert np.allclose(ev["pair_force"].sum(axis=1), 0, atol=1e-14)
    assert np.allclose(ev["pair_power"].sum(axis=1), 0, atol=1e-14)
    # U0 = 0.1 x^2 is a polynomial: the stencil reads it and U0' exactly
    assert np.allclose(ev["du0"], 0.2 * X, rtol=1e-10)
    w_half = 0.5 * np.sum(inter.w(X[:, :, None] - X[:, None, :]) * (1 - np.eye(4)), axis=2)
    e_ref = 0.5 * v**2 + q + 0.1 * X**2 + w_half
    qE = np.sin(t) * (1.0 - 0.4 * X)
    assert np.allclose(ev["field_force"], qE)
    if chi:
        assert np.allclose(ev["e"], e_ref + np.sin(t) * (0.2 * X**2 - X))
        assert np.allclose(ev["field_power"], np.cos(t) * (0.2 * X**2 - X))
    else:
        assert np.allclose(ev["e"], e_ref)
        assert np.allclose(ev["field_power"], qE * v)
    assert np.all(ev["gamma_total"] == 0)


# --------------------------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("g_size", [1, 3])
def test_health_kernel_matches_numpy_twin(g_size):
    from bohmpower.cw._guidance_kernels import health_pass_nb, health_pass_np

    rng = np.random.default_rng(5)
    n_b, n, n_x = 4, 3, 37
    psi = rng.normal(size=(n_b, n * g_size, n_x)) + 1j * rng.normal(size=(n_b, n * g_size, n_x))
    z = rng.normal(size=(n_b, n, g_size)) + 1j * rng.normal(size=(n_b, n, g_size))
    psi[2, 1, 5] = np.nan  # a NaN must reach the norm and the peak of its electron
    out = []
    for kern in (health_pass_nb, health_pass_np):
        norms, peak = np.empty((n_b, n * g_size)), np.empty((n_b, n))
        kern(psi, z, norms, peak)
        out.append((norms, peak))
    (n1, p1), (n2, p2) = out
    assert np.allclose(n1, n2, rtol=1e-13, equal_nan=True)
    assert np.allclose(p1, p2, rtol=1e-13, equal_nan=True)
    assert np.isnan(n1[2, 1]) and np.isnan(p1[2, 1 // g_size])
    assert np.isfinite(p1[0]).all()


def test_health_measures_match_relative_density():
    x = grid(-12.0, 24.0, 128)
    phi = orbitals(x, 3)
    X = np.array([[-2.9, 0.3, 3.1], [-1.0, 1.7, 4.4]])
    prop = propagator(x)
    for exchange in (False, True):
        psi, owner = initial_conditional_wavefunctions(phi, x, X, "fermion", exchange)
        _, _, values, z = guidance_ratios(prop, psi, X, owner, exchange)
        vals = None if exchange else values[..., 0]
        norms, rel = health_measures(psi, values=vals, z=z)
        assert np.allclose(rel, relative_density(psi, values=vals, z=z), rtol=1e-12)
        assert np.allclose(norms, np.sum(np.abs(psi) ** 2, axis=-1), rtol=1e-12)
        assert np.all((rel > 1e-3) & (rel < 1.0 + 1e-9))
