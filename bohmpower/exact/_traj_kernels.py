"""Local tensor-product Lagrange interpolation on the periodic N-d grid (numba) and its numpy twin.

Private module: arrays and scalars only, no validation (``bohmpower.exact.trajectories`` validates).

Layout
------
``fields2d`` has shape ``(n_f, n_x**N)``: ``n_f`` fields, each a C-ordered N-d array of shape
``(n_x,)*N`` flattened (axis 0 most significant). ``X`` has shape ``(n_w, N)``: one configuration per
row, coordinate a along grid axis a. ``out`` has shape ``(n_w, n_f)`` and the dtype of the fields.

Stencil
-------
Along each axis the p (even) nodes nearest to x are used: with s = (x - x_min)/dx and i0 = floor(s), the
nodes are i0 - p/2 + 1, ..., i0 + p/2 (indices taken modulo n_x: periodic wrap). In the local coordinate
u = s - i0 + p/2 - 1, which lies in [p/2 - 1, p/2), the nodes sit at 0, ..., p-1 and the Lagrange basis is

    L_j(u) = prod_{m != j} (u - m) / (j - m),
    L_j'(u) = sum_{l != j} prod_{m != j, l} (u - m) / (j - m)      (per unit of u; divide by dx).

Both are evaluated as plain products (no barycentric division by u - m, so a point on a node is exact).
The N-d weight of stencil point (j_0, ..., j_{N-1}) is the product of the 1D weights; with
``deriv_axis = a`` the 1D weights of axis a are replaced by L_j'/dx, which gives the derivative along a of
the interpolating polynomial. A configuration with a non-finite coordinate gives NaN.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["interp_nb", "interp_np", "lagrange_denominators"]


def lagrange_denominators(p: int) -> np.ndarray:
    """prod_{m != j} (j - m) for j = 0..p-1, shape (p,), float."""
    j = np.arange(p)
    d = j[:, None] - j[None, :]
    d = np.where(d == 0, 1, d)
    return np.prod(d.astype(float), axis=1)


@njit(cache=True)
def _weights_1d(u, p, denom, deriv, out):
    if deriv:
        for j in range(p):
            acc = 0.0
            for l in range(p):
                if l == j:
                    continue
                prod = 1.0
                for m in range(p):
                    if m != j and m != l:
                        prod *= u - m
                acc += prod
            out[j] = acc / denom[j]
    else:
        for j in range(p):
            prod = 1.0
            for m in range(p):
                if m != j:
                    prod *= u - m
            out[j] = prod / denom[j]


@njit(cache=True)
def interp_nb(fields2d, x_min, dx, n_x, X, p, deriv_axis, denom, out):
    """out[w, f] = sum over the p**N stencil of weight * fields2d[f, flat index] (see module notes)."""
    n_w, n_dim = X.shape
    n_f = fields2d.shape[0]
    half = p // 2 - 1
    wts = np.empty((n_dim, p))
    idx = np.empty((n_dim, p), dtype=np.int64)
    cnt = np.zeros(n_dim, dtype=np.int64)
    strides = np.empty(n_dim, dtype=np.int64)
    nx = np.int64(n_x)
    st = np.int64(1)
    for a in range(n_dim - 1, -1, -1):
        strides[a] = st
        st *= nx
    n_stencil = np.int64(1)
    for a in range(n_dim):
        n_stencil *= p
    for w in range(n_w):
        finite = True
        for a in range(n_dim):
            if not np.isfinite(X[w, a]):
                finite = False
        if not finite:
            for f in range(n_f):
                out[w, f] = np.nan
            continue
        for a in range(n_dim):
            s = (X[w, a] - x_min) / dx
            fl = np.floor(s)
            i0 = np.int64(fl)
            u = s - fl + half
            _weights_1d(u, p, denom, a == deriv_axis, wts[a])
            if a == deriv_axis:
                for j in range(p):
                    wts[a, j] /= dx
            for j in range(p):
                # Python-style modulo (non-negative for negative i): periodic wrap.
                idx[a, j] = ((i0 - half + j) % nx) * strides[a]
        for f in range(n_f):
            out[w, f] = 0.0
        for a in range(n_dim):
            cnt[a] = 0
        for _ in range(n_stencil):
            flat = np.int64(0)
            wt = 1.0
            for a in range(n_dim):
                flat += idx[a, cnt[a]]
                wt *= wts[a, cnt[a]]
            for f in range(n_f):
                out[w, f] += wt * fields2d[f, flat]
            # odometer over the stencil, last axis fastest (contiguous in memory)
            a = n_dim - 1
            while a >= 0:
                cnt[a] += 1
                if cnt[a] < p:
                    break
                cnt[a] = 0
                a -= 1


def _weights_1d_np(u: np.ndarray, p: int, denom: np.ndarray, deriv: bool) -> np.ndarray:
    """1D Lagrange weights for an array of local coordinates u: shape u.shape + (p,)."""
    diff = u[..., None] - np.arange(p)  # (..., p) factors u - m
    eye = np.eye(p, dtype=bool)
    if not deriv:
        # (..., j, m): factor u - m, 1 on the diagonal m == j
        fac = np.where(eye, 1.0, diff[..., None, :])
        return np.prod(fac, axis=-1) / denom
    # (..., j, l, m): factor u - m, 1 where m == j or m == l; then sum over l != j
    mask = eye[:, None, :] | eye[None, :, :]
    fac = np.where(mask, 1.0, diff[..., None, None, :])
    prods = np.prod(fac, axis=-1)
    prods = np.where(eye, 0.0, prods)
    return prods.sum(axis=-1) / denom


def interp_np(fields2d, x_min, dx, n_x, X, p, deriv_axis, denom, out):
    """Plain-numpy twin of :func:`interp_nb` (same arguments, fills ``out``)."""
    n_w, n_dim = X.shape
    half = p // 2 - 1
    finite = np.all(np.isfinite(X), axis=1)
    Xs = np.where(finite[:, None], X, x_min)
    s = (Xs - x_min) / dx
    fl = np.floor(s)
    u = s - fl + half
    i0 = fl.astype(np.int64)
    wts = np.empty((n_w, n_dim, p))
    for a in range(n_dim):
        wts[:, a, :] = _weights_1d_np(u[:, a], p, denom, a == deriv_axis)
        if a == deriv_axis:
            wts[:, a, :] /= dx
    strides = n_x ** np.arange(n_dim - 1, -1, -1, dtype=np.int64)
    idx = np.mod(i0[:, :, None] - half + np.arange(p), n_x) * strides[None, :, None]
    flat = np.zeros((n_w,) + (1,) * n_dim, dtype=np.int64)
    wt = np.ones((n_w,) + (1,) * n_dim)
    for a in range(n_dim):
        shape = [n_w] + [1] * n_dim
        shape[1 + a] = p
        flat = flat + idx[:, a, :].reshape(shape)
        wt = wt * wts[:, a, :].reshape(shape)
    flat = flat.reshape(n_w, -1)
    wt = wt.reshape(n_w, -1)
    vals = fields2d[:, flat]  # (n_f, n_w, p**N)
    out[...] = np.einsum("fwq,wq->wf", vals, wt)
    out[~finite, :] = np.nan
