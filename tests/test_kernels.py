"""Each numba kernel of bohmpower.exact._kernels against its plain-numpy twin, to round-off."""

from __future__ import annotations

import numpy as np
import pytest

from bohmpower.exact import _kernels as K

# One complex product per factor, each with relative error ~1e-16: after at most N + 3 factors the two
# evaluation orders differ by a few 1e-16 relative; 1e-14 leaves room without hiding a wrong index.
RTOL = 1e-14


def _random(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _unit_phases(rng, n):
    return np.exp(1j * rng.uniform(-np.pi, np.pi, n)) * rng.uniform(0.5, 1.0, n)


@pytest.mark.parametrize("n_axes, n_x", [(1, 17), (2, 16), (3, 9)])
def test_mul_separable(n_axes, n_x):
    rng = np.random.default_rng(n_axes)
    psi = _random(rng, (n_x,) * n_axes)
    vec = _unit_phases(rng, n_x)
    a, b = psi.copy(), psi.copy()
    K.mul_separable_nb(a.reshape(-1, n_x), vec, n_axes - 1)
    K.mul_separable_np(b.reshape(-1, n_x), vec, n_axes - 1)
    assert np.max(np.abs(a - b)) <= RTOL * np.max(np.abs(b))
    # and it is the product it claims to be: check one element by hand
    idx = tuple(rng.integers(0, n_x, n_axes))
    assert a[idx] == pytest.approx(psi[idx] * np.prod(vec[list(idx)]), rel=RTOL)


@pytest.mark.parametrize("power", [1, 2])
@pytest.mark.parametrize("n_axes, n_x", [(1, 17), (2, 16), (3, 9)])
def test_mul_static_separable(n_axes, n_x, power):
    rng = np.random.default_rng(10 * n_axes + power)
    psi = _random(rng, (n_x,) * n_axes)
    static = _random(rng, (n_x,) * n_axes)
    vec = _unit_phases(rng, n_x)
    a, b = psi.copy(), psi.copy()
    K.mul_static_separable_nb(a.reshape(-1, n_x), static.reshape(-1, n_x), power, vec, n_axes - 1)
    K.mul_static_separable_np(b.reshape(-1, n_x), static.reshape(-1, n_x), power, vec, n_axes - 1)
    assert np.max(np.abs(a - b)) <= RTOL * np.max(np.abs(b))
    idx = tuple(rng.integers(0, n_x, n_axes))
    expected = psi[idx] * static[idx] ** power * np.prod(vec[list(idx)])
    assert a[idx] == pytest.approx(expected, rel=RTOL)


@pytest.mark.parametrize("n_axes, n_x", [(1, 17), (2, 16), (3, 9)])
def test_mul_expstatic_separable(n_axes, n_x):
    rng = np.random.default_rng(100 + n_axes)
    psi = _random(rng, (n_x,) * n_axes)
    # a complex potential V - i Gamma with Gamma >= 0, as the propagator stores for order 4
    vc = rng.uniform(-3, 3, (n_x,) * n_axes) - 1j * rng.uniform(0, 2, (n_x,) * n_axes)
    vec = _unit_phases(rng, n_x)
    tau = 0.37
    a, b = psi.copy(), psi.copy()
    K.mul_expstatic_separable_nb(a.reshape(-1, n_x), vc.reshape(-1, n_x), tau, vec, n_axes - 1)
    K.mul_expstatic_separable_np(b.reshape(-1, n_x), vc.reshape(-1, n_x), tau, vec, n_axes - 1)
    assert np.max(np.abs(a - b)) <= RTOL * np.max(np.abs(b))
