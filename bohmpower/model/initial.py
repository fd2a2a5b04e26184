"""Initial one-electron orbitals and the many-electron product state built from them (atomic units).

Notes
-----
Packet (SPEC.md): psi(x) = (2 pi width^2)^(-1/4) exp(-(x - center)^2 / (4 width^2) + i wavenumber x), so
``width`` is the standard deviation of |psi|^2. Orbitals on the grid are renormalised to
sum |phi|^2 dx = 1 (for a resolved packet this changes them by the grid's quadrature error only).

Orbital order: [[initial.packet]] entries, then [initial.train] members (center = first_center + j spacing),
then [[initial.eigenstate]] entries.

Many-electron state, axis k of the N-d array = particle k, shape (n_x,)*N:

    fermion          Psi(x_1..x_N) = C sum_P sign(P) prod_k phi_P(k)(x_k)       (Slater determinant)
    distinguishable  Psi(x_1..x_N) = C prod_k phi_k(x_k)

with C fixing sum |Psi|^2 dx^N = 1. For fermions, ||sum_P sign(P) prod_k phi_P(k)||^2 = N! det S with the
overlap (Gram) matrix S_ij = <phi_i|phi_j>: linearly dependent orbitals give a zero determinant and are
refused (`check_independent`).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from bohmpower.errors import ConfigError
from bohmpower.model.grid import Grid

__all__ = [
    "GRAM_TOLERANCE",
    "check_independent",
    "gram_determinant",
    "many_body_product",
    "normalise",
    "orbitals_from_config",
    "packet",
    "packet_list",
    "permutation_sign",
]

logger = logging.getLogger(__name__)

#: Smallest allowed det of the overlap matrix of the normalised orbitals (1 for orthonormal ones).
GRAM_TOLERANCE = 1e-10
#: Largest probability a packet may have outside [x_min, x_max].
OUTSIDE_TOLERANCE = 1e-8


def packet(x: np.ndarray, center: float, width: float, wavenumber: float) -> np.ndarray:
    """Gaussian packet (SPEC.md formula) [bohr^-1/2], complex, shape of ``x``.

    Parameters
    ----------
    x : ndarray
        Positions [bohr].
    center : float
        Mean position [bohr].
    width : float
        Standard deviation of the density [bohr].
    wavenumber : float
        Mean wavenumber k0 [1/bohr].
    """
    x = np.asarray(x, dtype=float)
    return (2.0 * np.pi * width**2) ** -0.25 * np.exp(
        -((x - center) ** 2) / (4.0 * width**2) + 1j * wavenumber * x
    )


def normalise(orbitals: np.ndarray, dx: float) -> np.ndarray:
    """Orbitals (n_orb, n_x) scaled to sum |phi|^2 dx = 1 each (a new array)."""
    orbitals = np.asarray(orbitals)
    norms = np.sqrt(np.sum(np.abs(orbitals) ** 2, axis=-1) * dx)
    return orbitals / norms[..., None]


def gram_determinant(orbitals: np.ndarray, dx: float) -> float:
    """det of the overlap matrix S_ij = sum conj(phi_i) phi_j dx of the normalised orbitals, in [0, 1]."""
    phi = normalise(orbitals, dx)
    s = phi.conj() @ phi.T * dx
    return float(np.real(np.linalg.det(s)))


def check_independent(orbitals: np.ndarray, dx: float, key: str = "initial") -> float:
    """Refuse linearly dependent orbitals (fermions); return the Gram determinant.

    Raises
    ------
    ConfigError
        When det S < GRAM_TOLERANCE: the Slater determinant would vanish.
    """
    det = gram_determinant(orbitals, dx)
    if not det >= GRAM_TOLERANCE:
        raise ConfigError(
            key,
            f"the {len(orbitals)} orbitals are linearly dependent (determinant of their overlap matrix "
            f"{det:.3g} < {GRAM_TOLERANCE:g}), so their Slater determinant vanishes: give identical "
            "fermions different centres, wavenumbers or eigenstate indices",
        )
    return det


def permutation_sign(perm: Sequence[int]) -> int:
    """Sign (+1 or -1) of a permutation of 0..n-1 (by counting cycles)."""
    perm = list(perm)
    seen = [False] * len(perm)
    sign = 1
    for i in range(len(perm)):
        if seen[i]:
            continue
        j, length = i, 0
        while not seen[j]:
            seen[j] = True
            j = perm[j]
            length += 1
        if length % 2 == 0:
            sign = -sign
    return sign


def _outer(factors: Sequence[np.ndarray]) -> np.ndarray:
    out = factors[0]
    for f in factors[1:]:
        out = np.multiply.outer(out, f)
    return out


def many_body_product(orbitals: np.ndarray, statistics: str, dx: float | None = None) -> np.ndarray:
    """N-electron state from N orbitals on the grid, normalised to sum |Psi|^2 dx^N = 1.

    Parameters
    ----------
    orbitals : ndarray, shape (N, n_x)
        One orbital per electron (any normalisation when ``dx`` is given).
    statistics : {"fermion", "distinguishable"}
        Slater determinant (antisymmetric) or plain product phi_0(x_1) phi_1(x_2) ...
    dx : float, optional
        Grid spacing [bohr] (sets the normalisation). When omitted (the two-argument form of
        docs/design.md) the orbitals must already be normalised to sum |phi|^2 dx = 1, as
        ``Model.orbitals`` are, and dx is read off that normalisation, dx = 1 / sum |phi_0|^2;
        orbitals with unequal sums |phi_j|^2 are refused (ValueError: pass dx).

    Returns
    -------
    ndarray, complex, shape (n_x,) * N
        Axis k is particle k.

    Raises
    ------
    ConfigError
        ("initial") fermions with linearly dependent orbitals.

    Notes
    -----
    The determinant is a sum over all N! permutations with their signs, so any N works unchanged
    (memory: two arrays of n_x^N complex numbers).
    """
    orbitals = np.asarray(orbitals, dtype=complex)
    if orbitals.ndim != 2:
        raise ValueError(f"orbitals must have shape (N, n_x), got {orbitals.shape}")
    n = orbitals.shape[0]
    if dx is None:
        sums = np.sum(np.abs(orbitals) ** 2, axis=1)
        if not np.allclose(sums, sums[0], rtol=1e-10, atol=0):
            raise ValueError(
                "orbitals are not equally normalised, so the grid spacing cannot be read off them: pass dx"
            )
        dx = 1.0 / float(sums[0])
    phi = normalise(orbitals, dx)
    if statistics == "distinguishable":
        psi = _outer(list(phi))
    elif statistics == "fermion":
        check_independent(phi, dx)
        # One product T (axis j carries orbital j); the term of permutation P is T with its axes permuted,
        # np.transpose(T, P) (axis k carries orbital P(k)). Built from the same numbers, so two-electron
        # states are antisymmetric bit for bit, and larger N to round-off.
        t = _outer(list(phi))
        psi = np.zeros_like(t)
        for perm in itertools.permutations(range(n)):
            if permutation_sign(perm) > 0:
                psi += np.transpose(t, perm)
            else:
                psi -= np.transpose(t, perm)
        del t
    else:
        raise ConfigError(
            "particles.statistics", f"unknown {statistics!r}; allowed: fermion, distinguishable"
        )
    norm = math.sqrt(float(np.sum(np.abs(psi) ** 2)) * dx**n)
    psi /= norm
    return psi


def packet_list(initial: Any) -> list[tuple[str, float, float, float]]:
    """(key, center, width, wavenumber) of every packet and train member, in orbital order."""
    out = []
    for i, p in enumerate(getattr(initial, "packet", ()) or ()):
        out.append((f"initial.packet[{i}]", float(p.center), float(p.width), float(p.wavenumber)))
    train = getattr(initial, "train", None)
    if train is not None:
        for j in range(int(train.count)):
            out.append(
                (
                    "initial.train",
                    float(train.first_center) + j * float(train.spacing),
                    float(train.width),
                    float(train.wavenumber),
                )
            )
    return out


def orbitals_from_config(
    initial: Any,
    grid: Grid,
    u0: np.ndarray,
    mass: float,
    layer_mask: np.ndarray | None = None,
    units: Any = None,
) -> tuple[np.ndarray, list[str]]:
    """Orbitals of an atomic-unit ``InitialConfig``: packets, train members, eigenstates, in that order.

    Parameters
    ----------
    initial : InitialConfig
    grid : Grid
    u0 : ndarray, shape (n_x,)
        Static potential [hartree] (for eigenstates).
    mass : float
        [m_e].
    layer_mask : ndarray of bool, shape (n_x,), optional
        Points inside absorbing layers; a packet with probability > 1e-6 there is warned about.
    units : bohmpower.units.UnitSystem, optional
        The run file's system, for the messages (default atomic).

    Returns
    -------
    orbitals : ndarray, complex, shape (n_orb, n_x)
        Each normalised to sum |phi|^2 dx = 1.
    warnings : list of str

    Raises
    ------
    ConfigError
        A packet with width <= 0; an unbound eigenstate. (A packet whose tail beyond x_min or x_max
        exceeds 1e-8 in probability is warned about; config refuses centres closer than 3 widths.)
    """
    from scipy.special import erfc

    from bohmpower.model.spectrum import bound_eigenstates
    from bohmpower.units import ATOMIC

    units = ATOMIC if units is None else units
    q = units.quantity
    warnings: list[str] = []
    rows = []
    for key, center, width, k0 in packet_list(initial):
        if not width > 0:
            raise ConfigError(f"{key}.width", f"must be > 0, got {q(width, 'length')}")
        # Probability of the Gaussian density beyond each edge of the cell.
        out = 0.5 * erfc((center - grid.x_min) / (np.sqrt(2.0) * width)) + 0.5 * erfc(
            (grid.x_max - center) / (np.sqrt(2.0) * width)
        )
        if out > OUTSIDE_TOLERANCE:
            # config refuses packets whose centre +/- 3 widths leaves the grid; a smaller tail that
            # still crosses the cell edge wraps around the periodic cell, which is worth knowing.
            warnings.append(
                f"{key}: probability {out:.2g} of the packet at {q(center, 'length')} (width "
                f"{q(width, 'length')}) lies beyond the grid "
                f"{units.interval(grid.x_min, grid.x_max, 'length', digits=6)} and wraps around the cell"
            )
        phi = packet(grid.x, center, width, k0)
        if layer_mask is not None and np.any(layer_mask):
            p_layer = float(np.sum(np.abs(phi[layer_mask]) ** 2) * grid.dx)
            if p_layer > 1e-6:
                warnings.append(
                    f"{key}: probability {p_layer:.2g} of the packet starts inside an absorbing layer"
                )
        rows.append(phi)
    eig = list(getattr(initial, "eigenstate", ()) or ())
    if eig:
        keys = [f"initial.eigenstate[{j}].index" for j in range(len(eig))]
        _, states = bound_eigenstates(u0, grid, mass, [e.index for e in eig], keys, units=units)
        rows.extend(states.astype(complex))
    if not rows:
        return np.zeros((0, grid.n_x), dtype=complex), warnings
    return normalise(np.array(rows, dtype=complex), grid.dx), warnings
