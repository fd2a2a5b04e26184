"""numba kernel of the absorbing layers' R + T (bohmpower.model.absorber), with its plain-numpy twin.

Private: arrays and scalars only, no validation (the caller shapes everything). Atomic units.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: |q h|^2 up to which the slab matrix comes from its Taylor series (terms through (q h)^12: the
#: remainder is below 1e-20 relative there); larger slabs use the complex cos and sin.
TAYLOR_LIMIT = 0.04


@njit(cache=True)
def _slab(y: complex, h: float) -> tuple[complex, complex, complex]:
    """cos(x), sin(x)/x, x^2 = y of one slab (x = q h; both functions are even in x)."""
    if abs(y) <= TAYLOR_LIMIT:
        c = 1.0 + y * (-1.0 / 2 + y * (1.0 / 24 + y * (-1.0 / 720 + y * (1.0 / 40320 + y * (
            -1.0 / 3628800 + y * (1.0 / 479001600))))))
        s = 1.0 + y * (-1.0 / 6 + y * (1.0 / 120 + y * (-1.0 / 5040 + y * (1.0 / 362880 + y * (
            -1.0 / 39916800 + y * (1.0 / 6227020800))))))
        return c, s, y
    x = np.sqrt(y)
    return np.cos(x), np.sin(x) / x, y


@njit(cache=True)
def path_rt_nb(g: np.ndarray, h: float, mass: float, k: np.ndarray, out: np.ndarray) -> None:
    """out[i] = R + T of the slab path ``g`` (Gamma per slab, inner edge first, width ``h``) at k[i].

    psi = 1, psi' = i k on the far side is carried back slab by slab with the exact slab matrix
    [[cos x, -h sin(x)/x], [(x^2/h) sin(x)/x, cos x]], x^2 = 2 m (E + i Gamma) h^2, E = k^2 / 2m,
    rescaled when it grows (the log of the scale kept); at the inner edge it is split into the
    incident amplitude a and the reflected b: R = |b/a|^2, T = 1 / |a|^2.
    """
    n = g.shape[0]
    for i in range(k.shape[0]):
        kk = k[i]
        energy = kk * kk / (2.0 * mass)
        ik = 1j * kk
        p = 1.0 + 0.0j
        dp = ik
        log_scale = 0.0
        for j in range(n - 1, -1, -1):
            c, s, y = _slab(2.0 * mass * (energy + 1j * g[j]) * h * h, h)
            p, dp = c * p - h * s * dp, (y / h) * s * p + c * dp
            big = max(abs(p), abs(dp))
            if big > 1e100:
                p /= big
                dp /= big
                log_scale += math.log(big)
        a = 0.5 * (p + dp / ik)
        b = 0.5 * (p - dp / ik)
        out[i] = abs(b / a) ** 2 + math.exp(-2.0 * (math.log(abs(a)) + log_scale))


def path_rt_np(g: np.ndarray, h: float, mass: float, k: np.ndarray, out: np.ndarray) -> None:
    """numpy twin of :func:`path_rt_nb`: the slab matrices from complex cos and sin, multiplied by
    pairwise reduction (each level rescaled by its largest entry)."""
    energy = k**2 / (2.0 * mass)
    q = np.sqrt(2.0 * mass * (energy[None, :] + 1j * g[:, None]))  # (n_slabs, n_k), Re q > 0
    c = np.cos(q * h)
    sq = np.sin(q * h)
    m11, m12, m21, m22 = c, -sq / q, q * sq, c.copy()
    log_scale = np.zeros(k.shape)
    while m11.shape[0] > 1:
        if m11.shape[0] % 2:  # odd count: fold the last matrix into its neighbour
            a11, a12, a21, a22 = m11[-2], m12[-2], m21[-2], m22[-2]
            b11, b12, b21, b22 = m11[-1], m12[-1], m21[-1], m22[-1]
            m11[-2], m12[-2] = a11 * b11 + a12 * b21, a11 * b12 + a12 * b22
            m21[-2], m22[-2] = a21 * b11 + a22 * b21, a21 * b12 + a22 * b22
            m11, m12, m21, m22 = m11[:-1], m12[:-1], m21[:-1], m22[:-1]
            continue
        a11, a12, a21, a22 = m11[0::2], m12[0::2], m21[0::2], m22[0::2]
        b11, b12, b21, b22 = m11[1::2], m12[1::2], m21[1::2], m22[1::2]
        m11, m12 = a11 * b11 + a12 * b21, a11 * b12 + a12 * b22
        m21, m22 = a21 * b11 + a22 * b21, a21 * b12 + a22 * b22
        norm = np.maximum.reduce([np.abs(m11), np.abs(m12), np.abs(m21), np.abs(m22)])
        m11, m12, m21, m22 = m11 / norm, m12 / norm, m21 / norm, m22 / norm
        log_scale += np.log(norm).sum(axis=0)
    ik = 1j * k
    psi0 = m11[0] + m12[0] * ik
    dpsi0 = m21[0] + m22[0] * ik
    a = 0.5 * (psi0 + dpsi0 / ik)
    b = 0.5 * (psi0 - dpsi0 / ik)
    out[:] = np.abs(b / a) ** 2 + np.exp(-2.0 * (np.log(np.abs(a)) + log_scale))
