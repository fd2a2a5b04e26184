"""Lowest eigenstates of the one-electron Hamiltonian h = p^2/2m + U0(x) on the grid (atomic units).

Notes
-----
The kinetic energy is the periodic spectral operator T = F^-1 diag(k^2/2m) F, the same one the split-operator
propagator uses; as a matrix it is the real symmetric circulant T_ij = c[(i - j) mod n_x] with
c = ifft(k^2 / 2m). H = T + diag(U0) is diagonalised densely with scipy.linalg.eigh(subset_by_index=...),
fine up to n_x ~ 4096 (O(n_x^3) time, 8 n_x^2 bytes).

Eigenvectors are returned normalised as orbitals, sum |phi|^2 dx = 1, with the sign fixed so that the value
of largest magnitude is positive.

A state counts as bound when (i) its energy lies below the potential at both grid ends, U0(x_0) and
U0(x_{n-1}), the continuum threshold of the grid's box, and (ii) it is localised: the probability within
``edge_fraction`` (5%) of the cell length from either end is below ``edge_tolerance`` (1e-6).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.linalg

from bohmpower.errors import ConfigError
from bohmpower.model.grid import Grid

__all__ = ["MAX_DENSE_POINTS", "bound_eigenstates", "kinetic_matrix", "lowest_eigenstates"]

logger = logging.getLogger(__name__)

#: Largest grid for the dense diagonalisation.
MAX_DENSE_POINTS = 8192


def kinetic_matrix(grid: Grid, mass: float) -> np.ndarray:
    """Dense spectral kinetic-energy matrix, shape (n_x, n_x) [hartree], real symmetric.

    Notes
    -----
    (T psi)_i = sum_j T_ij psi_j equals ifft(k^2/2m fft(psi))_i; T_ij = c[(i - j) mod n], c = ifft(k^2/2m).
    The Nyquist term contributes cos(pi (i - j)), so c is real.
    """
    c = np.fft.ifft(grid.k**2 / (2.0 * mass)).real
    idx = np.arange(grid.n_x)
    return c[(idx[:, None] - idx[None, :]) % grid.n_x]


def lowest_eigenstates(
    u0: np.ndarray, grid: Grid, mass: float, n_states: int
) -> tuple[np.ndarray, np.ndarray]:
    """Lowest ``n_states`` eigenpairs of p^2/2m + U0 on the grid.

    Parameters
    ----------
    u0 : ndarray, shape (n_x,)
        Static potential [hartree].
    grid : Grid
    mass : float
        [m_e].
    n_states : int
        How many (>= 1, <= n_x).

    Returns
    -------
    energies : ndarray, shape (n_states,)
        [hartree], ascending.
    states : ndarray, shape (n_states, n_x)
        Real orbitals, sum |phi|^2 dx = 1 [bohr^-1/2].
    """
    u0 = np.asarray(u0, dtype=float)
    if u0.shape != (grid.n_x,):
        raise ValueError(f"u0 must have shape ({grid.n_x},), got {u0.shape}")
    if not 1 <= n_states <= grid.n_x:
        raise ValueError(f"n_states must be in 1..{grid.n_x}, got {n_states}")
    if grid.n_x > MAX_DENSE_POINTS:
        raise ConfigError(
            "grid.points",
            f"eigenstates use a dense diagonalisation limited to {MAX_DENSE_POINTS} points (got {grid.n_x})",
        )
    h = kinetic_matrix(grid, mass)
    h[np.diag_indices_from(h)] += u0
    energies, vecs = scipy.linalg.eigh(h, subset_by_index=[0, n_states - 1], overwrite_a=True)
    states = vecs.T / np.sqrt(grid.dx)
    for phi in states:
        if phi[np.argmax(np.abs(phi))] < 0:
            phi *= -1.0
    return energies, states


def bound_eigenstates(
    u0: np.ndarray,
    grid: Grid,
    mass: float,
    indices: list[int] | tuple[int, ...],
    keys: list[str] | tuple[str, ...] | None = None,
    *,
    edge_fraction: float = 0.05,
    edge_tolerance: float = 1e-6,
    units: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bound eigenstates of U0 with the requested indices (0 = lowest), refusing unbound ones.

    Parameters
    ----------
    u0 : ndarray, shape (n_x,)
        [hartree].
    grid : Grid
    mass : float
        [m_e].
    indices : sequence of int
        Requested eigenstate indices.
    keys : sequence of str, optional
        Dotted key per index for errors (default "initial.eigenstate[i].index").
    edge_fraction, edge_tolerance : float
        Localisation test (module Notes).

    Returns
    -------
    energies : ndarray, shape (n,)
        [hartree].
    states : ndarray, shape (n, n_x)
        Normalised real orbitals.

    Raises
    ------
    ConfigError
        On the index's key when the state is not bound (energy above an end of the grid, or not
        localised), or the index is negative.
    """
    from bohmpower.units import ATOMIC

    q = (ATOMIC if units is None else units).quantity
    indices = [int(i) for i in indices]
    if keys is None:
        keys = [f"initial.eigenstate[{j}].index" for j in range(len(indices))]
    if not indices:
        return np.zeros(0), np.zeros((0, grid.n_x))
    for i, key in zip(indices, keys):
        if i < 0:
            raise ConfigError(key, f"must be >= 0, got {i}")
    energies, states = lowest_eigenstates(u0, grid, mass, max(indices) + 1)
    threshold = min(float(u0[0]), float(u0[-1]))
    n_edge = max(1, int(np.ceil(edge_fraction * grid.n_x)))
    for i, key in zip(indices, keys):
        e = energies[i]
        if not e < threshold:
            raise ConfigError(
                key,
                f"eigenstate {i} of U0 (energy {q(e, 'energy')}) is not bound: it lies above the potential at "
                f"the grid ends ({q(threshold, 'energy')}). Choose an index below the number of bound states "
                f"or deepen the potential",
            )
        p = np.abs(states[i]) ** 2 * grid.dx
        p_edge = float(p[:n_edge].sum() + p[-n_edge:].sum())
        if p_edge > edge_tolerance:
            raise ConfigError(
                key,
                f"eigenstate {i} of U0 (energy {q(e, 'energy')}) is not localised: probability {p_edge:.3g} "
                f"within {edge_fraction:.0%} of the cell from its ends (allowed {edge_tolerance:g}); enlarge "
                f"the grid or choose a lower index",
            )
    sel = np.array(indices)
    return energies[sel], states[sel]
