"""numba kernel of the interacting scheme's guidance (``cw.interacting``); its numpy twin is
``interacting.reconstructed_ratios`` fed by ``ConditionalPropagator.derivatives``.

For each world w, the value and the first two derivatives of the reconstructed Psi in every electron's
coordinate at X_w, from the basis CWs phi^b_l (local Lagrange stencil, the weights of
``_kernels._stencil_weights``, computed once per electron and shared by every basis function):

    Psi(X_w)       = sum_b c_b F_b(A^b),           A^b_kl = phi^b_l(X_wk)
    d_k Psi(X_w)   = sum_b c_b F_b(A^b, row k <- phi^b_l'(X_wk))
    d_k^2 Psi(X_w) = sum_b c_b F_b(A^b, row k <- phi^b_l''(X_wk))

F = det (fermions) or the product of the diagonal (distinguishable electrons). One world per thread.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._kernels import _stencil_weights


@njit(cache=True, inline="always")
def _det(a, n, work):
    """Determinant of the n x n complex matrix a (Gaussian elimination with partial pivoting)."""
    for i in range(n):
        for j in range(n):
            work[i, j] = a[i, j]
    det = 1.0 + 0.0j
    for col in range(n):
        piv = col
        best = abs(work[col, col])
        for r in range(col + 1, n):
            if abs(work[r, col]) > best:
                best = abs(work[r, col])
                piv = r
        if best == 0.0:
            return 0.0 + 0.0j
        if piv != col:
            for j in range(n):
                tmp = work[col, j]
                work[col, j] = work[piv, j]
                work[piv, j] = tmp
            det = -det
        d = work[col, col]
        det *= d
        for r in range(col + 1, n):
            f = work[r, col] / d
            for j in range(col, n):
                work[r, j] -= f * work[col, j]
    return det


@njit(cache=True, inline="always")
def _form(a, n, antisymmetric, work):
    if antisymmetric:
        return _det(a, n, work)
    p = 1.0 + 0.0j
    for k in range(n):
        p *= a[k, k]
    return p


@njit(cache=True, parallel=True, error_model="numpy")
def icwf_ratios_nb(psi, c, X, x0, dx, n_p, antisymmetric, out_psi, r1, r2):
    """Psi, d_k Psi / Psi and d_k^2 Psi / Psi at the worlds X (B, N) (module Notes).

    psi (M, N, n_x) complex basis CWs; c (M,) complex; outputs (B,), (B, N), (B, N) complex.
    A world with a NaN position gets NaN.
    """
    m, n, n_x = psi.shape
    n_w = X.shape[0]
    nan = complex(np.nan, np.nan)
    for w in prange(n_w):
        bad = False
        for k in range(n):
            if np.isnan(X[w, k]):
                bad = True
        if bad:
            out_psi[w] = nan
            for k in range(n):
                r1[w, k] = nan
                r2[w, k] = nan
            continue
        wts = np.empty((n, n_p, 3))
        start = np.empty(n, dtype=np.int64)
        for k in range(n):
            start[k] = _stencil_weights(X[w, k], x0, dx, n_p, wts[k])
        a0 = np.empty((n, n), dtype=np.complex128)
        a1 = np.empty((n, n), dtype=np.complex128)
        a2 = np.empty((n, n), dtype=np.complex128)
        tmp = np.empty((n, n), dtype=np.complex128)
        work = np.empty((n, n), dtype=np.complex128)
        total = 0.0 + 0.0j
        s1 = np.zeros(n, dtype=np.complex128)
        s2 = np.zeros(n, dtype=np.complex128)
        for b in range(m):
            cb = c[b]
            for k in range(n):
                s0 = start[k]
                for ll in range(n):
                    v0 = 0j
                    v1 = 0j
                    v2 = 0j
                    if s0 >= 0 and s0 + n_p <= n_x:  # interior: no wrap (integer % is slow)
                        for j in range(n_p):
                            f = psi[b, ll, s0 + j]
                            v0 += wts[k, j, 0] * f
                            v1 += wts[k, j, 1] * f
                            v2 += wts[k, j, 2] * f
                    else:
                        for j in range(n_p):
                            f = psi[b, ll, (s0 + j) % n_x]
                            v0 += wts[k, j, 0] * f
                            v1 += wts[k, j, 1] * f
                            v2 += wts[k, j, 2] * f
                    a0[k, ll] = v0
                    a1[k, ll] = v1 / dx
                    a2[k, ll] = v2 / (dx * dx)
            total += cb * _form(a0, n, antisymmetric, work)
            for k in range(n):
                for i in range(n):
                    for ll in range(n):
                        tmp[i, ll] = a0[i, ll]
                for ll in range(n):
                    tmp[k, ll] = a1[k, ll]
                s1[k] += cb * _form(tmp, n, antisymmetric, work)
                for ll in range(n):
                    tmp[k, ll] = a2[k, ll]
                s2[k] += cb * _form(tmp, n, antisymmetric, work)
        out_psi[w] = total
        for k in range(n):
            r1[w, k] = s1[k] / total
            r2[w, k] = s2[k] / total
