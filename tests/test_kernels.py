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


def _complex_potential_phases(rng, n, tau):
    # exp(-i tau (V - i Gamma)) with Gamma >= 0: what the propagator passes (moduli <= 1)
    v = rng.uniform(-3, 3, n) - 1j * rng.uniform(0, 2, n)
    return np.exp(-1j * tau * v)


@pytest.mark.parametrize("n_axes, n_x", [(1, 17), (2, 16), (2, 15), (3, 9), (4, 5)])
@pytest.mark.parametrize("pairs", [True, False])
def test_mul_onebody_pair(n_axes, n_x, pairs):
    rng = np.random.default_rng(10 * n_axes + n_x + pairs)
    psi = _random(rng, (n_x,) * n_axes)
    vec = _complex_potential_phases(rng, n_x, 0.37)
    wtab = _complex_potential_phases(rng, 2 * n_x - 1, 0.37) if pairs else np.zeros(0, complex)
    a, b = psi.copy(), psi.copy()
    K.mul_onebody_pair_nb(a.reshape(-1, n_x), vec, wtab, n_axes - 1)
    K.mul_onebody_pair_np(b.reshape(-1, n_x), vec, wtab, n_axes - 1)
    assert np.max(np.abs(a - b)) <= RTOL * np.max(np.abs(b))
    # and it is the product it claims to be: check elements by hand, with the table indexed by the
    # signed index difference i_j - i_k (j < k), so a transposed pair would fail here
    for _ in range(5):
        idx = tuple(int(i) for i in rng.integers(0, n_x, n_axes))
        expected = psi[idx] * np.prod(vec[list(idx)])
        if pairs:
            for j in range(n_axes):
                for k in range(j + 1, n_axes):
                    expected *= wtab[idx[j] - idx[k] + n_x - 1]
        assert a[idx] == pytest.approx(expected, rel=RTOL)
