"""Fused elementwise passes of the split-operator step (numba) and their plain-numpy twins.

Private module: arrays and scalars only, no validation (the propagator validates). Every kernel works
for any number of electrons N by viewing the C-contiguous N-d array ``psi`` of shape ``(n_x,)*N`` as a
2D array ``psi2d`` of shape ``(n_x**(N-1), n_x)``: the row index r spells the first N-1 grid indices in
base n_x, the column is the last one. A separable factor ``prod_k vec[i_k]`` then splits into a row
factor (N-1 table look-ups per row, negligible) times ``vec[column]``, so no N-d array of the factor is
ever formed.

Each ``*_nb`` kernel has a ``*_np`` twin with the same arguments that builds the same product with numpy
broadcasting; tests/test_kernels.py holds one against the other to round-off.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = [
    "mul_expstatic_separable_nb",
    "mul_expstatic_separable_np",
    "mul_separable_nb",
    "mul_separable_np",
    "mul_static_separable_nb",
    "mul_static_separable_np",
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
    """psi2d[r, i] *= prod_{digits d of r} vec[d] * vec[i]  (in place; kinetic and drive phases)."""
    n_rows, n_x = psi2d.shape
    for r in prange(n_rows):
        f = _row_factor(r, vec, n_lead)
        for i in range(n_x):
            psi2d[r, i] *= f * vec[i]


@njit(cache=True, parallel=True)
def mul_static_separable_nb(psi2d, static2d, power, vec, n_lead):
    """psi2d *= static2d**power * (separable product of vec); power is 1 or 2 (in place)."""
    n_rows, n_x = psi2d.shape
    for r in prange(n_rows):
        f = _row_factor(r, vec, n_lead)
        if power == 2:
            for i in range(n_x):
                s = static2d[r, i]
                psi2d[r, i] *= (s * s) * (f * vec[i])
        else:
            for i in range(n_x):
                psi2d[r, i] *= static2d[r, i] * (f * vec[i])


@njit(cache=True, parallel=True)
def mul_expstatic_separable_nb(psi2d, vc2d, tau, vec, n_lead):
    """psi2d *= exp(-i tau vc2d) * (separable product of vec) (in place; vc2d complex potential)."""
    n_rows, n_x = psi2d.shape
    for r in prange(n_rows):
        f = _row_factor(r, vec, n_lead)
        for i in range(n_x):
            v = vc2d[r, i]
            # exp(-i tau (V - i G)) = exp(-tau G) (cos(tau V) - i sin(tau V)), with v = V - i G
            a = tau * v.real
            mag = np.exp(tau * v.imag)
            psi2d[r, i] *= (mag * np.cos(a) - 1j * (mag * np.sin(a))) * (f * vec[i])


def _separable_np(vec: np.ndarray, n_axes: int) -> np.ndarray:
    out = np.ones((1,) * n_axes, dtype=np.complex128)
    for k in range(n_axes):
        shape = [1] * n_axes
        shape[k] = vec.shape[0]
        out = out * vec.reshape(shape)
    return out


def mul_separable_np(psi2d: np.ndarray, vec: np.ndarray, n_lead: int) -> None:
    """Numpy twin of :func:`mul_separable_nb`."""
    n_x = vec.shape[0]
    full = psi2d.reshape((n_x,) * (n_lead + 1))
    full *= _separable_np(vec, n_lead + 1)


def mul_static_separable_np(
    psi2d: np.ndarray, static2d: np.ndarray, power: int, vec: np.ndarray, n_lead: int
) -> None:
    """Numpy twin of :func:`mul_static_separable_nb`."""
    n_x = vec.shape[0]
    full = psi2d.reshape((n_x,) * (n_lead + 1))
    full *= static2d.reshape(full.shape) ** power * _separable_np(vec, n_lead + 1)


def mul_expstatic_separable_np(
    psi2d: np.ndarray, vc2d: np.ndarray, tau: float, vec: np.ndarray, n_lead: int
) -> None:
    """Numpy twin of :func:`mul_expstatic_separable_nb`."""
    n_x = vec.shape[0]
    full = psi2d.reshape((n_x,) * (n_lead + 1))
    full *= np.exp(-1j * tau * vc2d.reshape(full.shape)) * _separable_np(vec, n_lead + 1)
