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
    """Determinant of the leading n x n block of the complex matrix a.

    Closed forms for n <= 3 (no pivoting, no division: exact zeros stay zeros), Gaussian elimination
    with partial pivoting beyond."""
    if n == 1:
        return a[0, 0]
    if n == 2:
        return a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
    if n == 3:
        return (a[0, 0] * (a[1, 1] * a[2, 2] - a[1, 2] * a[2, 1])
                - a[0, 1] * (a[1, 0] * a[2, 2] - a[1, 2] * a[2, 0])
                + a[0, 2] * (a[1, 0] * a[2, 1] - a[1, 1] * a[2, 0]))
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
def _cofactors(a, n, minor, work, cof):
    """cof[k, l] = (-1)^(k + l) det(a without row k and column l): det(a with row k replaced by v) is
    sum_l v_l cof[k, l] (Laplace expansion), so one cofactor matrix serves every row replacement."""
    if n == 1:
        cof[0, 0] = 1.0
        return
    for k in range(n):
        for ll in range(n):
            r = 0
            for i in range(n):
                if i == k:
                    continue
                q = 0
                for j in range(n):
                    if j == ll:
                        continue
                    minor[r, q] = a[i, j]
                    q += 1
                r += 1
            sgn = 1.0 if (k + ll) % 2 == 0 else -1.0
            cof[k, ll] = sgn * _det(minor, n - 1, work)


@njit(cache=True, parallel=True, error_model="numpy")
def icwf_ratios_nb(psi, c, X, x0, dx, n_p, antisymmetric, out_psi, r1, r2):
    """Psi, d_k Psi / Psi and d_k^2 Psi / Psi at the worlds X (B, N) (module Notes).

    psi (M, N, n_x) complex basis CWs; c (M,) complex; outputs (B,), (B, N), (B, N) complex.
    A world with a NaN position gets NaN. Per world and basis function: the N x N matrices of values
    and derivatives (3 N^2 stencil sums), one cofactor matrix (fermions) or the diagonal products
    (distinguishable electrons); no determinant is recomputed for the row replacements.
    """
    m, n, n_x = psi.shape
    n_w = X.shape[0]
    nan = complex(np.nan, np.nan)
    inv_dx = 1.0 / dx
    inv_dx2 = inv_dx * inv_dx
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
        idx = np.empty((n, n_p), dtype=np.int64)
        for k in range(n):
            s0 = _stencil_weights(X[w, k], x0, dx, n_p, wts[k])
            for j in range(n_p):
                idx[k, j] = (s0 + j) % n_x
            for j in range(n_p):
                wts[k, j, 1] *= inv_dx
                wts[k, j, 2] *= inv_dx2
        a0 = np.empty((n, n), dtype=np.complex128)
        a1 = np.empty((n, n), dtype=np.complex128)
        a2 = np.empty((n, n), dtype=np.complex128)
        cof = np.empty((n, n), dtype=np.complex128)
        minor = np.empty((max(n - 1, 1), max(n - 1, 1)), dtype=np.complex128)
        work = np.empty((n, n), dtype=np.complex128)
        total = 0.0 + 0.0j
        s1 = np.zeros(n, dtype=np.complex128)
        s2 = np.zeros(n, dtype=np.complex128)
        for b in range(m):
            cb = c[b]
            for k in range(n):
                for ll in range(n):
                    if not antisymmetric and ll != k:
                        continue  # a product needs the diagonal only
                    v0 = 0j
                    v1 = 0j
                    v2 = 0j
                    for j in range(n_p):
                        f = psi[b, ll, idx[k, j]]
                        v0 += wts[k, j, 0] * f
                        v1 += wts[k, j, 1] * f
                        v2 += wts[k, j, 2] * f
                    a0[k, ll] = v0
                    a1[k, ll] = v1
                    a2[k, ll] = v2
            if antisymmetric:
                _cofactors(a0, n, minor, work, cof)
                d0 = 0j
                for ll in range(n):
                    d0 += a0[0, ll] * cof[0, ll]
                total += cb * d0
                for k in range(n):
                    e1 = 0j
                    e2 = 0j
                    for ll in range(n):
                        e1 += a1[k, ll] * cof[k, ll]
                        e2 += a2[k, ll] * cof[k, ll]
                    s1[k] += cb * e1
                    s2[k] += cb * e2
            else:
                for k in range(n):
                    rest = cb
                    for j in range(n):
                        if j != k:
                            rest *= a0[j, j]
                    s1[k] += rest * a1[k, k]
                    s2[k] += rest * a2[k, k]
                    if k == 0:
                        total += rest * a0[0, 0]
        out_psi[w] = total
        for k in range(n):
            r1[w, k] = s1[k] / total
            r2[w, k] = s2[k] / total


@njit(cache=True, parallel=True)
def pair_densities_nb(psi, a, b, i, j, out):
    """out[c, :n_x] = conj(psi[a[c], i]) * psi[b[c], j] and out[c, n_x:] = 0 (the zero padding).

    Twin: ``np.conj(psi[a, i]) * psi[b, j]`` padded (``interacting.PairInteraction.pair_matrix``
    with ``kernels=False``)."""
    n_x = psi.shape[2]
    length = out.shape[1]
    for c in prange(a.size):
        pa = a[c]
        pb = b[c]
        for x in range(n_x):
            out[c, x] = psi[pa, i, x].conjugate() * psi[pb, j, x]
        for x in range(n_x, length):
            out[c, x] = 0.0


@njit(cache=True, parallel=True)
def parseval_sums_nb(f_hat, g_hat, w_hat, out):
    """out[c] = sum_q f_hat[c, -q] w_hat[q] g_hat[c, q] (indices mod L): the Parseval form of
    sum_xy f(x) W(x - y) g(y) for zero-padded f, g. Twin: the einsum of ``pair_matrix``."""
    length = f_hat.shape[1]
    for c in prange(f_hat.shape[0]):
        acc = f_hat[c, 0] * w_hat[0] * g_hat[c, 0]
        for q in range(1, length):
            acc += f_hat[c, length - q] * w_hat[q] * g_hat[c, q]
        out[c] = acc
