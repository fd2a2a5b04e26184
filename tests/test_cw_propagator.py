"""Conditional-wavefunction propagator (bohmpower.cw.propagator) and its kernels."""

from __future__ import annotations

import numpy as np
import pytest

from bohmpower.cw import _kernels as K
from bohmpower.cw.propagator import ConditionalPropagator, owner_layout
from bohmpower.model.interaction import Interaction

# Two ways of forming the same products and FFTs differ by a few ulp per operation; a step has ~30
# roundings per element of an O(1) array, so 1e-13 absolute leaves room without hiding an error.
ROUND = 1e-13


def _grid(m=128, x_min=-40.0, x_max=40.0):
    return x_min + np.arange(m) * (x_max - x_min) / m


def _gauss(x, c, s, k):
    return (2 * np.pi * s * s) ** -0.25 * np.exp(-((x - c) ** 2) / (4 * s * s) + 1j * k * x)


def _rand(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _split_step_1d(psi, v, dt, mass, kgrid):
    """Independent plain 1D Strang step with a given complex potential v (numpy)."""
    ph = np.exp(-0.5j * dt * v)
    return ph * np.fft.ifft(np.exp(-0.5j * dt * kgrid**2 / mass) * np.fft.fft(ph * psi))


SOFT = Interaction(kind="soft_coulomb", softening=0.8, eps_r=1.5)
HARM = Interaction(kind="harmonic", strength=0.02)


# ------------------------------------------------------------------------------- kernels vs twins
def test_cis_kernel():
    rng = np.random.default_rng(1)
    # wide range: reduction quadrants, negative angles, and |theta| ~ 1e4 (Cody-Waite regime)
    theta = np.concatenate([rng.uniform(-7, 7, 500), rng.uniform(-1e4, 1e4, 500), [0.0, np.pi / 4]])
    a = np.empty(theta.size, complex)
    b = np.empty(theta.size, complex)
    K.cis_nb(theta, a)
    K.cis_np(theta, b)
    # np.exp is correctly rounded to ~1 ulp; the polynomial adds a few ulp; theta ~1e4 carries
    # its own representation error eps*1e4 ~ 2e-12 identically in both, so 1e-15 is a real check.
    assert np.max(np.abs(a - b)) < 1e-15


@pytest.mark.parametrize(
    "w, kind", [(None, K.W_NONE), (SOFT.w, K.W_SOFT), (HARM.w, K.W_HARMONIC), ("table", K.W_TABLE)]
)
@pytest.mark.parametrize("exchange", [False, True])
def test_step_and_phase_kernels_match_twins(w, kind, exchange):
    rng = np.random.default_rng(kind + 10 * exchange)
    x = _grid(64)
    n_b, n = 4, 3
    owner = owner_layout(n, exchange)
    X = rng.uniform(-20, 20, (n_b, n))
    X[2, 1] = np.nan  # a removed world
    p1, p2 = {K.W_NONE: (0, 0), K.W_SOFT: (1 / 1.5, 0.64), K.W_HARMONIC: (0.01, 0)}.get(
        kind, (0, 0)
    )
    wpre = SOFT.w(x[None, None, :] - X[:, :, None]) if kind == K.W_TABLE else np.zeros((0, 0, 0))
    base = np.exp(-0.05j * rng.uniform(-1, 1, x.size) - 0.05 * rng.uniform(0, 1, x.size))
    kin = np.exp(-0.1j * rng.uniform(0, 5, x.size)) / x.size
    psi = _rand(rng, (n_b, owner.size, x.size))
    a, b = psi.copy(), psi.copy()
    K.step_worlds_nb(a, owner, X, x, base, kin, kind, p1, p2, wpre, 0.05)
    K.step_worlds_np(b, owner, X, x, base, kin, kind, p1, p2, wpre, 0.05)
    assert np.max(np.abs(a - b)) < ROUND
    assert np.array_equal(a[2], psi[2])
    c = psi.copy()
    K.step_worlds_par_nb(c, owner, X, x, base, kin, kind, p1, p2, wpre, 0.05, 2)
    assert np.array_equal(c, a)  # same arithmetic, only split over threads
    pa = np.zeros((n_b, n, x.size), complex)
    pb = np.zeros_like(pa)
    K.owner_phases_nb(X, x, base, kind, p1, p2, wpre, 0.05, pa)
    K.owner_phases_np(X, x, base, kind, p1, p2, wpre, 0.05, pb)
    assert np.max(np.abs(pa - pb)) < 1e-14  # |phase| <= 1, a handful of roundings
    a, b = psi.copy(), psi.copy()
    K.mul_owner_phase_nb(a, owner, pa)
    K.mul_owner_phase_np(b, owner, pa)
    assert np.max(np.abs(a - b)) < 1e-15 * np.max(
        np.abs(b)
    )  # one product (FMA may differ by 1 ulp)


@pytest.mark.parametrize("shared", [False, True])
def test_stencil_kernel_matches_twin(shared):
    rng = np.random.default_rng(5)
    x = _grid(48)
    dx = x[1] - x[0]
    psi = _rand(rng, (2, 3, x.size))
    # points inside, next to both periodic edges (the stencil wraps), exactly on nodes, and NaN
    pts = rng.uniform(x[0], x[-1] + dx, (2, 1 if shared else 3, 6))
    pts[0, 0, 0], pts[0, 0, 1], pts[1, 0, 2], pts[1, 0, 3] = (
        x[0] + 0.1 * dx,
        x[-1] + 0.7 * dx,
        x[7],
        np.nan,
    )
    for n_p in (4, 8, 12):
        out_a = [np.empty((2, 3, 6), complex) for _ in range(3)]
        out_b = [np.empty((2, 3, 6), complex) for _ in range(3)]
        K.stencil_eval_nb(psi, pts, x[0], dx, n_p, *out_a)
        K.stencil_eval_np(psi, pts, x[0], dx, n_p, *out_b)
        for u, v, scale in zip(out_a, out_b, (1.0, 1 / dx, 1 / dx**2), strict=True):
            # Lagrange weights reach ~|binomial| ~ 500 at 12 points; 1e-12 relative to the data scale
            assert np.allclose(u, v, rtol=0, atol=1e-11 * scale, equal_nan=True)
        assert np.all(np.isnan(out_a[0][1, :1, 3]))


# ------------------------------------------------------------------------------- physics
def test_single_cw_static_potential_equals_plain_split_operator_and_eigen():
    x = _grid(128)
    u0 = 0.05 * x**2 / 2 + 0.3 * np.exp(-((x - 3) ** 2))
    dt, mass, n_steps = 0.02, 0.7, 50
    prop = ConditionalPropagator(x, mass, u0, None, None, None, None, dt)
    psi0 = _gauss(x, -4.0, 1.5, 0.4)
    psi = psi0[None, None, :].copy()
    ref = psi0.copy()
    for s in range(n_steps):
        prop.step(psi, s * dt, np.array([0]), np.array([[0.0]]))
        ref = _split_step_1d(ref, u0, dt, mass, prop.k)
    assert np.max(np.abs(psi[0, 0] - ref)) < ROUND * n_steps
    # exact: H with the spectral kinetic matrix (the same discretisation), eigen-decomposed
    m = x.size
    f = np.fft.fft(np.eye(m), axis=0)
    t_mat = np.fft.ifft((prop.k**2 / (2 * mass))[:, None] * f, axis=0)
    e, v = np.linalg.eigh(t_mat + np.diag(u0))
    exact = v @ (np.exp(-1j * e * dt * n_steps) * (v.conj().T @ psi0))
    err_dt = np.linalg.norm(psi[0, 0] - exact) * np.sqrt(prop.dx)
    # Strang: global error C dt^2 t; halve dt, the error falls by 4 (order 2, not a loose bound)
    prop2 = ConditionalPropagator(x, mass, u0, None, None, None, None, dt / 2)
    psi2 = psi0[None, None, :].copy()
    for s in range(2 * n_steps):
        prop2.step(psi2, s * dt / 2, np.array([0]), np.array([[0.0]]))
    err_half = np.linalg.norm(psi2[0, 0] - exact) * np.sqrt(prop.dx)
    assert err_dt < 1e-3
    assert 3.7 < err_dt / err_half < 4.3


def test_free_gaussian_and_norm_without_interaction():
    x = _grid(256, -60, 60)
    s0, k0, c0, mass, dt = 2.0, 1.0, -10.0, 1.0, 0.05
    prop = ConditionalPropagator(x, mass, np.zeros(x.size), None, None, None, None, dt)
    n_b, n = 2, 3
    psi = np.broadcast_to(_gauss(x, c0, s0, k0), (n_b, n, x.size)).copy()
    X = np.zeros((n_b, n))
    for s in range(40):
        prop.step(psi, s * dt, np.arange(n), X)
    t = 40 * dt
    # analytic free Gaussian: complex width s_t = s0 (1 + i t / (2 m s0^2))
    st = s0 * (1 + 1j * t / (2 * mass * s0**2))
    ana = (
        (2 * np.pi) ** -0.25 / np.sqrt(st)
        * np.exp(-((x - c0 - k0 * t / mass) ** 2) / (4 * s0 * st) + 1j * k0 * (x - 0.5 * k0 * t / mass))
    )  # fmt: skip
    # free motion: the kinetic step is exact; the packet tails at the periodic seam are ~e^-50
    assert np.max(np.abs(psi - ana)) < 1e-12
    # with a static potential and a time-dependent drive: still unitary (norm to round-off)
    u0 = 0.2 * np.cos(0.3 * x)
    prop = ConditionalPropagator(x, mass, u0, None, None, np.array([0.01 * x]), [np.sin], dt)
    psi = np.broadcast_to(_gauss(x, c0, s0, k0), (1, 2, x.size)).copy()
    for s in range(40):
        prop.step(psi, s * dt, np.arange(2), np.zeros((1, 2)))
    norm = np.sum(np.abs(psi) ** 2, axis=-1) * prop.dx
    assert np.max(np.abs(norm - 1)) < 1e-12


@pytest.mark.parametrize("exchange", [False, True])
@pytest.mark.parametrize("inter", [SOFT, "callable"])
def test_owner_potential_excludes_own_term(exchange, inter):
    """Each CW against an independent 1D step in the explicitly built sum over j != owner."""
    rng = np.random.default_rng(3)
    x = _grid(128)
    u0 = 0.01 * x**2
    shapes, profiles = np.array([0.05 * np.tanh(x / 5)]), [lambda t: np.cos(2 * t)]
    wfun = SOFT.w if inter is SOFT else (lambda r: 1.0 / (1.5 * np.sqrt(r * r + 0.64)))
    dt, t = 0.04, 0.3
    prop = ConditionalPropagator(x, 1.0, u0, None, wfun, shapes, profiles, dt)
    n_b, n = 2, 3
    owner = owner_layout(n, exchange)
    psi0 = np.stack(
        [_gauss(x, rng.uniform(-10, 10), 2.0, rng.uniform(-1, 1)) for _ in range(owner.size)]
    )
    psi = np.broadcast_to(psi0, (n_b, owner.size, x.size)).copy()
    X = rng.uniform(-15, 15, (n_b, n))
    prop.step(psi, t, owner, X)
    drive = 0.05 * np.tanh(x / 5) * np.cos(2 * (t + dt / 2))
    for b in range(n_b):
        for c, a in enumerate(owner):
            v = u0 + drive + sum(wfun(x - X[b, j]) for j in range(n) if j != a)
            ref = _split_step_1d(psi0[c], v, dt, 1.0, prop.k)
            assert np.max(np.abs(psi[b, c] - ref)) < ROUND
            # and it does feel the others: with the own term included the result differs clearly
            wrong = _split_step_1d(psi0[c], v + wfun(x - X[b, a]), dt, 1.0, prop.k)
            assert np.max(np.abs(psi[b, c] - wrong)) > 1e-4


def test_second_order_in_dt_with_drive_and_moving_partner():
    x = _grid(128)
    x_of_t = lambda t: np.array([[3.0 * np.sin(0.7 * t), -5.0 + 2.0 * t]])
    shapes, profiles = np.array([-0.1 * x / 40]), [lambda t: np.sin(1.3 * t)]
    owner = np.arange(2)
    psi0 = np.stack([_gauss(x, -3.0, 1.5, 0.5), _gauss(x, 4.0, 1.5, -0.3)])

    def run(dt, t_end=2.0):
        prop = ConditionalPropagator(x, 1.0, 0.02 * x**2, None, SOFT.w, shapes, profiles, dt)
        psi = psi0[None].copy()
        n = round(t_end / dt)
        for s in range(n):
            prop.step(psi, s * dt, owner, x_of_t((s + 0.5) * dt))
        return psi

    ref = run(0.1 / 16)
    e1 = np.max(np.abs(run(0.1) - ref))
    e2 = np.max(np.abs(run(0.05) - ref))
    # order 2: ratio 4 (the reference's own error, 1/256 of e1, shifts it by < 2%)
    assert 3.6 < e1 / e2 < 4.4


def test_absorbing_layer_acts_only_when_reached():
    x = _grid(256, -60, 60)
    gamma = np.where(x > 40, 0.5 * ((x - 40) / 20) ** 2, 0.0)
    dt = 0.05
    prop = ConditionalPropagator(x, 1.0, np.zeros(x.size), gamma, None, None, None, dt)
    psi = _gauss(x, 0.0, 2.0, 3.0)[None, None].copy()
    norms = []
    for s in range(360):  # v = 3: the centre reaches the layer (x = 40) at t ~ 13, x = 54 at t = 18
        prop.step(psi, s * dt, np.array([0]), np.zeros((1, 1)))
        norms.append(np.sum(np.abs(psi) ** 2) * prop.dx)
    norms = np.array(norms)
    # for t <= 5 the centre is at x <= 15, 25 bohr = 12 widths from the layer: the density there is
    # below e^-70, so the norm is conserved to round-off
    assert np.max(np.abs(norms[:100] - 1)) < 1e-12
    assert norms[-1] < 0.5  # most of the packet has entered the layer and been absorbed
    assert np.all(np.diff(norms) <= 1e-15)  # never increases


def test_removed_worlds_untouched_and_backends_agree():
    rng = np.random.default_rng(7)
    x = _grid(64)
    prop = ConditionalPropagator(
        x, 1.0, 0.01 * x**2, 0.01 * (x / 40) ** 2, SOFT.w, None, None, 0.05
    )
    owner = owner_layout(3, True)
    psi = _rand(rng, (5, owner.size, x.size))
    X = rng.uniform(-10, 10, (5, 3))
    X[0, 0] = X[3, 2] = np.nan
    a, b = psi.copy(), psi.copy()
    prop.step(a, 0.0, owner, X)
    prop.fft_backend = "scipy"
    prop.step(b, 0.0, owner, X)
    assert np.array_equal(a[0], psi[0]) and np.array_equal(a[3], psi[3])
    assert np.array_equal(b[0], psi[0]) and np.array_equal(b[3], psi[3])
    assert np.max(np.abs(a - b)) < ROUND


def test_derivatives_of_gaussian():
    x = _grid(512, -80, 80)  # dx = 0.3125
    c, s, k = 1.3, 2.5, 0.9  # k dx ~ 0.28 (+ the width's content): well resolved
    psi = np.broadcast_to(_gauss(x, c, s, k), (2, 4, x.size)).copy()
    prop = ConditionalPropagator(x, 1.0, np.zeros(x.size), None, None, None, None, 0.05)
    X = np.array([[0.0, 1.1, -2.0, 3.7], [x[258], 5.0, np.nan, -4.4]])
    val, d1, d2 = prop.derivatives(psi, X)
    assert val.shape == (2, 4)
    xx = X
    g = _gauss(xx, c, s, k)
    lg = -(xx - c) / (2 * s * s) + 1j * k
    ok = ~np.isnan(xx)
    # Lagrange 12 points at k_eff dx ~ 0.4 (k0 dx = 0.28 plus the width's content): measured errors
    # relative to the packet's scale (bench_cw.py) ~1e-9 (value), 1e-8 (d1/k), 1e-7 (d2/k^2);
    # the bounds below are 10x those, far below any error a wrong weight or index would make.
    scale = np.max(np.abs(g[ok]))
    assert np.max(np.abs(val[ok] - g[ok])) < 1e-8 * scale
    assert np.max(np.abs(d1[ok] - (lg * g)[ok])) < 1e-7 * scale * k
    assert np.max(np.abs(d2[ok] - ((lg**2 - 1 / (2 * s * s)) * g)[ok])) < 1e-6 * scale * k * k
    assert np.all(np.isnan(val[~ok]))
    # the points form: every CW at every position, same numbers as the owner form on the diagonal
    pts = np.broadcast_to(X[:, None, :], (2, 4, 4)).copy()
    v3, d13, d23 = prop.derivatives(psi, pts)
    assert v3.shape == (2, 4, 4)
    idx = np.arange(4)
    assert np.allclose(v3[:, idx, idx], val, rtol=0, atol=1e-14, equal_nan=True)
    assert np.allclose(d13[:, idx, idx], d1, rtol=0, atol=1e-13, equal_nan=True)
    assert np.allclose(d23[:, idx, idx], d2, rtol=0, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("kind", [K.W_SOFT, K.W_HARMONIC])
def test_pool_phase_kernel_matches_twin(kind):
    rng = np.random.default_rng(30 + kind)
    x = _grid(64)
    group = np.array([2, 0, 2, 1, 0, 2])  # worlds of 2, 1 and 3 electrons, interleaved
    X = rng.uniform(-20, 20, group.size)
    p1, p2 = (1 / 1.5, 0.64) if kind == K.W_SOFT else (0.01, 0.0)
    base = np.exp(-0.05j * rng.uniform(-1, 1, x.size) - 0.05 * rng.uniform(0, 1, x.size))
    pa = np.zeros((group.size, x.size), complex)
    pb = np.zeros_like(pa)
    K.pool_phases_nb(group, X, x, base, kind, p1, p2, 0.05, 3, pa)
    K.pool_phases_np(group, X, x, base, kind, p1, p2, 0.05, 3, pb)
    assert np.max(np.abs(pa - pb)) < 1e-14
    # the lone electron of world 1 feels no partner: its phase is the base phase
    assert np.max(np.abs(pa[3] - base)) < 1e-15


@pytest.mark.parametrize("backend", ["rocket", "scipy"])
@pytest.mark.parametrize("inter", [SOFT, None])
def test_pool_step_equals_the_world_layout_step(backend, inter):
    """An open system's pool (one row per electron, worlds interleaved) steps every electron in the
    zeroth-order conditional potential of its own world, as ``step`` does for worlds of N rows."""
    rng = np.random.default_rng(8)
    x = _grid(64)
    prop = ConditionalPropagator(x, 1.0, 0.01 * x**2, 0.01 * (x / 40) ** 2,
                                 None if inter is None else inter.w, None, None, 0.05)
    prop.fft_backend = backend
    n_b, n = 3, 3
    psi = _rand(rng, (n_b, n, x.size))
    X = rng.uniform(-10, 10, (n_b, n))
    ref = psi.copy()
    prop.step(ref, 0.3, np.arange(n), X)
    order = rng.permutation(n_b * n)  # pool rows in any order
    world, which = np.divmod(order, n)
    pool = np.ascontiguousarray(psi[world, which][:, None, :])
    prop.step_pool(pool, 0.3, world, X[world, which], n_b)
    assert np.max(np.abs(pool[:, 0] - ref[world, which])) < ROUND
    if inter is not None:  # and the interaction is there: without it the step differs
        bare = ConditionalPropagator(x, 1.0, 0.01 * x**2, 0.01 * (x / 40) ** 2, None, None, None,
                                     0.05)
        alone = np.ascontiguousarray(psi[world, which][:, None, :])
        bare.step_pool(alone, 0.3, world, X[world, which], n_b)
        assert np.max(np.abs(alone - pool)) > 1e-3
