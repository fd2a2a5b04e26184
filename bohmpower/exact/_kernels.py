"""Fused elementwise passes of the split-operator step (numba) and their plain-numpy twins.

Private module: arrays and scalars only, no validation (the propagator validates). Every kernel works
for any number of electrons N by viewing the C-contiguous N-d array ``psi`` of shape ``(n_x,)*N`` as a
2D array ``psi2d`` of shape ``(n_x**(N-1), n_x)``: the row index r spells the first N-1 grid indices
``i_0 .. i_{N-2}`` in base n_x (i_0 most significant), the column is the last one, ``i_{N-1}``.

Two factors are applied without ever forming an N-d array of them:

- a separable factor ``prod_k vec[i_k]`` (kinetic phase in k-space; one-body potential, absorber and
  drive phase in x-space): a row factor (N-1 look-ups per row) times ``vec[column]``;
- a pair factor ``prod_{j<k} wtab[i_j - i_k + n_x - 1]``: on a uniform grid x_j - x_k = (i_j - i_k) dx,
  so exp(-i tau W(x_j - x_k)) takes only 2 n_x - 1 values, tabulated in ``wtab`` (index d + n_x - 1 for
  the index difference d). An empty ``wtab`` means no pair factor.

Each ``*_nb`` kernel has a ``*_np`` twin with the same arguments that builds the same product with numpy
broadcasting; tests/test_kernels.py holds one against the other to round-off.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = [
    "mul_onebody_pair_nb",
    "mul_onebody_pair_np",
    "mul_separable_nb",
    "mul_separable_np",
]


@njit(cache=True)
def _row_factor(r, vec, n_lead):
    # The same 1D vector acts on every axis (identical electrons feel the same field), so the order in
    # which the base-n_x digits of r are peeled off does not matter.
    # int64 throughout: a prange index may be unsigned, and uint64 % int64 would type as float.
    n = np.int64(vec.shape[0])
    f = 1.0 + 0.0j
    rem = np.int64(r)
    for _ in range(n_lead):
        f *= vec[rem % n]
        rem //= n
    return f


@njit(cache=True, parallel=True)
def mul_separable_nb(psi2d, vec, n_lead):
    """psi2d[r, i] *= prod_{digits d of r} vec[d] * vec[i]  (in place; kinetic phase)."""
    n_rows, n_x = psi2d.shape
    for r in prange(n_rows):
        f = _row_factor(r, vec, n_lead)
        for i in range(n_x):
            psi2d[r, i] *= f * vec[i]


@njit(cache=True, parallel=True)
def mul_onebody_pair_nb(psi2d, vec, wtab, n_lead):
    """psi[i_0..i_{N-1}] *= prod_k vec[i_k] * prod_{j<k} wtab[i_j - i_k + n_x - 1]  (in place).

    ``wtab`` has 2 n_x - 1 entries, or none (no pair factor).
    """
    n_rows, n_x = psi2d.shape
    off = np.int64(n_x - 1)
    n = np.int64(n_x)
    pairs = wtab.shape[0] > 0
    for r in prange(n_rows):
        idx = np.empty(max(n_lead, 1), dtype=np.int64)
        rem = np.int64(r)
        for k in range(n_lead - 1, -1, -1):
            idx[k] = rem % n
            rem //= n
        f = 1.0 + 0.0j
        for k in range(n_lead):
            f *= vec[idx[k]]
        if not pairs:
            for i in range(n_x):
                psi2d[r, i] *= f * vec[i]
        elif n_lead == 1:
            # Two electrons (the common case): one table look-up per point.
            base = idx[0] + off
            for i in range(n_x):
                psi2d[r, i] *= (f * vec[i]) * wtab[base - i]
        else:
            for j in range(n_lead):
                for k in range(j + 1, n_lead):
                    f *= wtab[idx[j] - idx[k] + off]
            for i in range(n_x):
                g = f * vec[i]
                for j in range(n_lead):
                    g *= wtab[idx[j] - i + off]
                psi2d[r, i] *= g


def _separable_np(vec: np.ndarray, n_axes: int) -> np.ndarray:
    out = np.ones((1,) * n_axes, dtype=np.complex128)
    for k in range(n_axes):
        shape = [1] * n_axes
        shape[k] = vec.shape[0]
        out = out * vec.reshape(shape)
    return out


def _pair_np(wtab: np.ndarray, n_x: int, n_axes: int) -> np.ndarray:
    out = np.ones((1,) * n_axes, dtype=np.complex128)
    if wtab.shape[0] == 0:
        return out
    i = np.arange(n_x)
    for j in range(n_axes):
        for k in range(j + 1, n_axes):
            sj = [1] * n_axes
            sk = [1] * n_axes
            sj[j] = n_x
            sk[k] = n_x
            out = out * wtab[i.reshape(sj) - i.reshape(sk) + n_x - 1]
    return out


def mul_separable_np(psi2d: np.ndarray, vec: np.ndarray, n_lead: int) -> None:
    """Numpy twin of :func:`mul_separable_nb`."""
    n_x = vec.shape[0]
    full = psi2d.reshape((n_x,) * (n_lead + 1))
    full *= _separable_np(vec, n_lead + 1)


def mul_onebody_pair_np(psi2d: np.ndarray, vec: np.ndarray, wtab: np.ndarray, n_lead: int) -> None:
    """Numpy twin of :func:`mul_onebody_pair_nb`."""
    n_x = vec.shape[0]
    full = psi2d.reshape((n_x,) * (n_lead + 1))
    full *= _separable_np(vec, n_lead + 1) * _pair_np(wtab, n_x, n_lead + 1)
