"""Pieces of the N-electron Hamiltonian on the full product grid (atomic units).

This module is the one place where the many-body Hamiltonian is assembled from its parts; the
propagator, the eigensolver and the grid observables all import it, so that the three agree term by
term.

Conventions
-----------
- ``x`` is the 1D grid, shape ``(n_x,)``, uniform and periodic (``x_max`` is the image of ``x_min``).
- ``kx`` are the FFT angular wavenumbers of that grid in numpy ``fftfreq`` order, shape ``(n_x,)``.
- A many-body array has shape ``(n_x,) * n_particles``; axis ``k`` is the coordinate of electron ``k``.

Notes
-----
The Hermitian Hamiltonian (length gauge, THEORY.md section 1) is

.. math::

    H = \\sum_k \\left[ -\\frac{1}{2m} \\partial_k^2 + U_0(x_k) + q\\phi(x_k, t) \\right]
        + \\sum_{j<k} W(x_j - x_k).

The absorbing layer, :math:`-i \\sum_k \\Gamma(x_k)`, is not part of it: the propagator adds it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import scipy.fft as sfft

__all__ = [
    "apply_hamiltonian",
    "coordinate",
    "d_axis",
    "half_pair_sum_on",
    "kinetic_axis",
    "one_body_sum",
    "pair_sum",
]

logger = logging.getLogger(__name__)

PairPotential = Callable[[np.ndarray], np.ndarray]


def coordinate(x: np.ndarray, n_particles: int, k: int) -> np.ndarray:
    """Coordinate of electron ``k`` as an array broadcastable to the many-body grid.

    Parameters
    ----------
    x : ndarray, shape (n_x,)
        1D grid [bohr].
    n_particles : int
        Number of electrons N (the number of axes).
    k : int
        Which electron, ``0 <= k < N``.

    Returns
    -------
    ndarray, shape (1,)*k + (n_x,) + (1,)*(N-k-1)
        A view of ``x`` laid along axis ``k``.
    """
    if not 0 <= k < n_particles:
        raise ValueError(f"axis k={k} outside 0..{n_particles - 1}")
    shape = [1] * n_particles
    shape[k] = x.shape[0]
    return np.asarray(x).reshape(shape)


def one_body_sum(f_1d: np.ndarray, n_particles: int) -> np.ndarray:
    """Sum of a one-body function over the electrons, on the full grid.

    Parameters
    ----------
    f_1d : ndarray, shape (n_x,)
        f(x) on the 1D grid (real or complex).
    n_particles : int
        Number of electrons N.

    Returns
    -------
    ndarray, shape (n_x,)*N
        :math:`\\sum_k f(x_k)`.
    """
    f_1d = np.asarray(f_1d)
    n_x = f_1d.shape[0]
    out = np.zeros((n_x,) * n_particles, dtype=np.result_type(f_1d.dtype, np.float64))
    for k in range(n_particles):
        out += coordinate(f_1d, n_particles, k)
    return out


def pair_sum(w: PairPotential | None, x: np.ndarray, n_particles: int) -> np.ndarray:
    """Pair interaction summed over distinct pairs, on the full grid.

    Parameters
    ----------
    w : callable or None
        W(r) [hartree], vectorised over r [bohr]; ``None`` means no interaction (zeros).
    x : ndarray, shape (n_x,)
        1D grid [bohr].
    n_particles : int
        Number of electrons N.

    Returns
    -------
    ndarray, shape (n_x,)*N, float
        :math:`\\sum_{j<k} W(x_j - x_k)` [hartree].
    """
    x = np.asarray(x, dtype=float)
    out = np.zeros((x.shape[0],) * n_particles)
    if w is None:
        return out
    for j in range(n_particles):
        for k in range(j + 1, n_particles):
            out += w(coordinate(x, n_particles, j) - coordinate(x, n_particles, k))
    return out


def half_pair_sum_on(
    w: PairPotential | None, x: np.ndarray, n_particles: int, k: int
) -> np.ndarray:
    """Half the interaction of electron ``k`` with all the others (its share in h_k).

    Parameters
    ----------
    w : callable or None
        W(r) [hartree]; ``None`` gives zeros.
    x : ndarray, shape (n_x,)
        1D grid [bohr].
    n_particles : int
        Number of electrons N.
    k : int
        Which electron.

    Returns
    -------
    ndarray, shape (n_x,)*N, float
        :math:`\\frac12 \\sum_{j \\ne k} W(x_k - x_j)` [hartree]. Summed over k it gives
        :func:`pair_sum` (the interaction is shared half-half, THEORY.md section 2).
    """
    x = np.asarray(x, dtype=float)
    out = np.zeros((x.shape[0],) * n_particles)
    if w is None:
        return out
    xk = coordinate(x, n_particles, k)
    for j in range(n_particles):
        if j != k:
            out += w(xk - coordinate(x, n_particles, j))
    out *= 0.5
    return out


def _k_along(kx: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = kx.shape[0]
    return kx.reshape(shape)


def d_axis(
    psi: np.ndarray, kx: np.ndarray, axis: int, order: int = 1, workers: int = 1
) -> np.ndarray:
    """Spectral derivative of ``psi`` along one axis.

    Parameters
    ----------
    psi : ndarray, shape (n_x,)*N
        Values on the grid (not modified).
    kx : ndarray, shape (n_x,)
        FFT angular wavenumbers [1/bohr], numpy ``fftfreq`` order.
    axis : int
        Axis to differentiate along.
    order : int
        Derivative order (>= 0).
    workers : int
        Threads for scipy.fft.

    Returns
    -------
    ndarray, complex, same shape as ``psi``
        :math:`\\partial^{order}_{axis} \\psi` [psi units / bohr^order].

    Notes
    -----
    Multiplies the Fourier coefficients by :math:`(i k)^{order}`. For odd orders the Nyquist
    coefficient (present when n_x is even) is set to zero: its mode is a real cosine whose derivative
    the grid cannot represent, and keeping it would make the derivative of a real function complex.
    """
    kx = np.asarray(kx, dtype=float)
    n_x = kx.shape[0]
    if psi.shape[axis] != n_x:
        raise ValueError(f"psi has {psi.shape[axis]} points along axis {axis}, kx has {n_x}")
    factor = (1j * kx) ** order
    if order % 2 == 1 and n_x % 2 == 0:
        factor = factor.copy()
        factor[n_x // 2] = 0.0
    c = sfft.fft(psi, axis=axis, workers=workers)
    c *= _k_along(factor, psi.ndim, axis)
    return sfft.ifft(c, axis=axis, overwrite_x=True, workers=workers)


def kinetic_axis(
    psi: np.ndarray, kx: np.ndarray, mass: float, axis: int, workers: int = 1
) -> np.ndarray:
    """Kinetic energy of one electron applied to ``psi``.

    Parameters
    ----------
    psi : ndarray, shape (n_x,)*N
    kx : ndarray, shape (n_x,)
        FFT angular wavenumbers [1/bohr].
    mass : float
        Electron (effective) mass [m_e].
    axis : int
        The electron's axis.
    workers : int
        Threads for scipy.fft.

    Returns
    -------
    ndarray, complex, same shape as ``psi``
        :math:`-\\frac{1}{2m} \\partial^2_{axis} \\psi` [hartree * psi units].
    """
    kx = np.asarray(kx, dtype=float)
    c = sfft.fft(psi, axis=axis, workers=workers)
    c *= _k_along(kx**2 / (2.0 * mass), psi.ndim, axis)
    return sfft.ifft(c, axis=axis, overwrite_x=True, workers=workers)


def apply_hamiltonian(
    psi: np.ndarray,
    x: np.ndarray,
    kx: np.ndarray,
    mass: float,
    u0: np.ndarray,
    w: PairPotential | None,
    drive_1d: np.ndarray | None = None,
    workers: int = 1,
) -> np.ndarray:
    """Apply the Hermitian N-electron Hamiltonian to ``psi``.

    Parameters
    ----------
    psi : ndarray, shape (n_x,)*N
        Wavefunction; N is ``psi.ndim``.
    x : ndarray, shape (n_x,)
        1D grid [bohr].
    kx : ndarray, shape (n_x,)
        FFT angular wavenumbers [1/bohr].
    mass : float
        Electron mass [m_e].
    u0 : ndarray, shape (n_x,)
        Static potential U0(x) [hartree].
    w : callable or None
        Pair interaction W(r) [hartree].
    drive_1d : ndarray, shape (n_x,), optional
        Driving potential energy q*phi(x, t) at the time of interest [hartree].
    workers : int
        Threads for scipy.fft.

    Returns
    -------
    ndarray, complex, shape of ``psi``
        :math:`H \\psi` [hartree * psi units]; no absorbing term.
    """
    n = psi.ndim
    v1 = np.asarray(u0, dtype=float)
    if drive_1d is not None:
        v1 = v1 + np.asarray(drive_1d, dtype=float)
    out = (one_body_sum(v1, n) + pair_sum(w, x, n)) * psi
    out = out.astype(np.result_type(out.dtype, np.complex128), copy=False)
    for k in range(n):
        out += kinetic_axis(psi, kx, mass, k, workers=workers)
    return out
