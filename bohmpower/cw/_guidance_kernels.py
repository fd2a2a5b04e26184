"""numba kernels of the CW health check, each with a plain-numpy twin (tests hold them together).

The health check reads every CW once per check; with exchange a block of worlds holds N^2 CWs per world,
so the pass is memory-bound and two separate numpy passes (norms, then the combination
sum_j z_j phi^a_j(x) and its maximum) cost twice what one fused pass does.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["health_pass_nb", "health_pass_np"]


@njit(cache=True)
def health_pass_nb(psi, z, norms, peak):  # pragma: no cover - compiled (tested through the twin)
    """Norms of all CWs and the peak of each electron's combination, in one pass over psi.

    Parameters
    ----------
    psi : complex128 (B, C, M), C = N * G
        CWs, electron a owning rows a*G .. a*G + G - 1.
    z : complex128 (B, N, G)
        Coefficients of each electron's combination g_a(x) = sum_j z[b, a, j] psi[b, a*G + j, x].
    norms : float64 (B, C), out
        sum_x |psi[b, c, x]|^2 (not multiplied by dx).
    peak : float64 (B, N), out
        max_x |g_a(x)|^2 (NaN if any term is NaN).
    """
    n_b, n_c, n_x = psi.shape
    n = z.shape[1]
    g_size = z.shape[2]
    for b in range(n_b):
        for c in range(n_c):
            norms[b, c] = 0.0
        for a in range(n):
            pk = 0.0
            bad = False
            for m in range(n_x):
                gr = 0.0
                gi = 0.0
                for j in range(g_size):
                    p = psi[b, a * g_size + j, m]
                    pr = p.real
                    pi = p.imag
                    norms[b, a * g_size + j] += pr * pr + pi * pi
                    zz = z[b, a, j]
                    gr += zz.real * pr - zz.imag * pi
                    gi += zz.real * pi + zz.imag * pr
                s = gr * gr + gi * gi
                if s > pk:
                    pk = s
                elif np.isnan(s):
                    bad = True
            peak[b, a] = np.nan if bad else pk


def health_pass_np(psi, z, norms, peak):
    """Plain-numpy twin of :func:`health_pass_nb` (same arguments and outputs)."""
    n_b, _n_c, n_x = psi.shape
    n, g_size = z.shape[1], z.shape[2]
    norms[...] = np.sum(np.abs(psi) ** 2, axis=-1)
    g = np.matmul(z[:, :, None, :], psi.reshape(n_b, n, g_size, n_x))[:, :, 0, :]
    s = np.abs(g) ** 2
    pk = np.max(s, axis=-1)
    peak[...] = np.where(np.any(np.isnan(s), axis=-1), np.nan, pk)
