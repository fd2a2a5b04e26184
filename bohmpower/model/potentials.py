"""Static device potential U0(x): a sum of analytic pieces and tabulated files (atomic units).

Every function takes positions in bohr and returns energies in hartree, shape of ``x``.

Notes
-----
Pieces (SPEC.md, "Exact meaning of the pieces"):

    barrier         +height * S(x; c - width/2, c + width/2, s)
    well            -depth  * S(x; c - width/2, c + width/2, s)
    double_barrier  barrier(c - (gap + width)/2) + barrier(c + (gap + width)/2)
    harmonic        (1/2) m omega^2 (x - c)^2
    gaussian        height exp(-(x - c)^2 / (2 width^2))
    soft_coulomb_well  -charge / (eps_r sqrt((x - c)^2 + softening^2))
    table           two columns (x, U) read with numpy.loadtxt, converted from ``table_units`` to
                    atomic units, linearly interpolated onto the grid

with the window S(x; x1, x2, s) = (1/2)[tanh((x - x1)/s) - tanh((x - x2)/s)] for s > 0 and its s -> 0 limit
for s = 0: 1 strictly inside (x1, x2), 0 strictly outside, and exactly 1/2 on an edge point x = x1 or
x = x2 (the value of the smooth window at its edge for every s, so s -> 0 is continuous pointwise).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bohmpower.errors import ConfigError
from bohmpower.model.grid import Grid

__all__ = [
    "POTENTIAL_KINDS",
    "barrier",
    "double_barrier",
    "gaussian",
    "harmonic",
    "soft_coulomb_well",
    "static_potential",
    "table",
    "well",
    "window",
]

logger = logging.getLogger(__name__)

POTENTIAL_KINDS = (
    "barrier",
    "double_barrier",
    "well",
    "harmonic",
    "gaussian",
    "soft_coulomb_well",
    "table",
)


def window(x: np.ndarray, x1: float, x2: float, smoothing: float = 0.0) -> np.ndarray:
    """Smoothed top hat S(x) on [x1, x2].

    Parameters
    ----------
    x : ndarray
        Positions [bohr].
    x1, x2 : float
        Edges [bohr], x1 <= x2.
    smoothing : float
        Edge width s [bohr]; 0 gives the sharp window.

    Returns
    -------
    ndarray, shape of ``x``
        S(x) in [0, 1].

    Notes
    -----
    S(x) = (1/2)[tanh((x - x1)/s) - tanh((x - x2)/s)]; for s = 0, S = 1 inside, 0 outside and 1/2 exactly
    on an edge (the s -> 0 limit at that point).
    """
    x = np.asarray(x, dtype=float)
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    if smoothing == 0:
        return 0.5 * (np.sign(x - x1) - np.sign(x - x2))
    return 0.5 * (np.tanh((x - x1) / smoothing) - np.tanh((x - x2) / smoothing))


def barrier(
    x: np.ndarray, center: float, width: float, height: float, smoothing: float = 0.0
) -> np.ndarray:
    """+height on |x - center| < width/2 with smoothed edges [hartree]."""
    return height * window(x, center - 0.5 * width, center + 0.5 * width, smoothing)


def well(
    x: np.ndarray, center: float, width: float, depth: float, smoothing: float = 0.0
) -> np.ndarray:
    """-depth on |x - center| < width/2 with smoothed edges [hartree]."""
    return -depth * window(x, center - 0.5 * width, center + 0.5 * width, smoothing)


def double_barrier(
    x: np.ndarray, center: float, width: float, height: float, gap: float, smoothing: float = 0.0
) -> np.ndarray:
    """Two barriers of ``width`` and ``height`` centred at center -/+ (gap + width)/2 [hartree]."""
    half = 0.5 * (gap + width)
    return barrier(x, center - half, width, height, smoothing) + barrier(
        x, center + half, width, height, smoothing
    )


def harmonic(x: np.ndarray, center: float, omega: float, mass: float) -> np.ndarray:
    """(1/2) m omega^2 (x - center)^2 [hartree]; omega in rad per a.u. of time, m in electron masses."""
    x = np.asarray(x, dtype=float)
    return 0.5 * mass * omega**2 * (x - center) ** 2


def gaussian(x: np.ndarray, center: float, width: float, height: float) -> np.ndarray:
    """height exp(-(x - center)^2 / (2 width^2)) [hartree]."""
    x = np.asarray(x, dtype=float)
    return height * np.exp(-((x - center) ** 2) / (2.0 * width**2))


def soft_coulomb_well(
    x: np.ndarray, center: float, charge: float, softening: float, eps_r: float = 1.0
) -> np.ndarray:
    """-charge / (eps_r sqrt((x - center)^2 + softening^2)) [hartree] (charge in e, e^2/4 pi eps0 = 1)."""
    x = np.asarray(x, dtype=float)
    return -charge / (eps_r * np.sqrt((x - center) ** 2 + softening**2))


def table(
    x: np.ndarray, file: str | Path, table_units: str | None = "atomic", key: str = "potential.file"
) -> np.ndarray:
    """Tabulated potential, linearly interpolated onto ``x`` [hartree].

    Parameters
    ----------
    x : ndarray
        Positions [bohr] (the grid points).
    file : str or Path
        Text file with two columns: position, potential (``numpy.loadtxt``; ``#`` comments).
    table_units : {"atomic", "device"} or None
        Unit system of the file's columns (bohr, hartree or nm, eV); None means atomic.
    key : str
        Dotted key used in error messages ("potential[2].file").

    Raises
    ------
    ConfigError
        File unreadable, not two columns, positions not strictly increasing, or the table's range does
        not cover every point of ``x``.
    """
    from bohmpower.units import UnitSystem

    x = np.asarray(x, dtype=float)
    system = UnitSystem(table_units or "atomic")
    try:
        data = np.loadtxt(file, dtype=float, ndmin=2)
    except (OSError, ValueError) as exc:
        raise ConfigError(key, f"cannot read potential table {str(file)!r}: {exc}") from None
    if data.shape[1] != 2 or data.shape[0] < 2:
        raise ConfigError(
            key,
            f"{str(file)!r} must hold two columns (position, potential) and >= 2 rows, got shape {data.shape}",
        )
    xs = system.to_atomic(data[:, 0], "length")
    us = system.to_atomic(data[:, 1], "energy")
    if not np.all(np.isfinite(xs)) or not np.all(np.isfinite(us)):
        raise ConfigError(key, f"{str(file)!r} holds non-finite values")
    if np.any(np.diff(xs) <= 0):
        raise ConfigError(key, f"positions in {str(file)!r} must be strictly increasing")
    # Round-off from the unit conversion must not make an exactly covering table fail.
    tol = 1e-9 * max(1.0, float(np.max(np.abs(xs))))
    if xs[0] > x.min() + tol or xs[-1] < x.max() - tol:
        raise ConfigError(
            key,
            f"the table in {str(file)!r} spans {system.interval(xs[0], xs[-1], 'length', digits=10)} "
            f"but must cover the grid points {system.interval(x.min(), x.max(), 'length', digits=10)} "
            "(x_max - dx is the last grid point)",
        )
    return np.interp(x, xs, us)


def _num(piece: Any, name: str, key: str, default: float | None = None) -> float:
    value = getattr(piece, name, None)
    if value is None:
        if default is None:
            raise ConfigError(f"{key}.{name}", f"required for kind = {piece.kind!r}")
        return float(default)
    return float(value)


def static_potential(
    pieces: Sequence[Any], grid: Grid, mass: float, eps_r: float = 1.0
) -> np.ndarray:
    """Sum of the run's [[potential]] pieces on the grid.

    Parameters
    ----------
    pieces : sequence of PotentialPiece
        Atomic-unit pieces (``config.PotentialPiece``: kind, center, width, height, depth, gap, smoothing,
        omega, charge, softening, file, table_units); unused parameters None.
    grid : Grid
    mass : float
        Particle mass [m_e] (enters ``harmonic``).
    eps_r : float
        Relative permittivity from [interaction] (1 when absent; enters ``soft_coulomb_well``).

    Returns
    -------
    ndarray, shape (n_x,)
        U0 on the grid [hartree]; zeros when there are no pieces.
    """
    x = grid.x
    u0 = np.zeros(grid.n_x)
    for i, piece in enumerate(pieces):
        key = f"potential[{i}]"
        kind = piece.kind
        c = getattr(piece, "center", None)
        c = 0.0 if c is None else float(c)
        s = getattr(piece, "smoothing", None)
        s = 0.0 if s is None else float(s)
        if s < 0:
            raise ConfigError(f"{key}.smoothing", f"must be >= 0, got {s}")
        if kind == "barrier":
            u0 += barrier(x, c, _num(piece, "width", key), _num(piece, "height", key), s)
        elif kind == "well":
            u0 += well(x, c, _num(piece, "width", key), _num(piece, "depth", key), s)
        elif kind == "double_barrier":
            u0 += double_barrier(
                x,
                c,
                _num(piece, "width", key),
                _num(piece, "height", key),
                _num(piece, "gap", key),
                s,
            )
        elif kind == "harmonic":
            u0 += harmonic(x, c, _num(piece, "omega", key), mass)
        elif kind == "gaussian":
            u0 += gaussian(x, c, _num(piece, "width", key), _num(piece, "height", key))
        elif kind == "soft_coulomb_well":
            u0 += soft_coulomb_well(
                x, c, _num(piece, "charge", key), _num(piece, "softening", key), eps_r
            )
        elif kind == "table":
            file = getattr(piece, "file", None)
            if file is None:
                raise ConfigError(f"{key}.file", "required for kind = 'table'")
            u0 += table(x, file, getattr(piece, "table_units", None), key=f"{key}.file")
        else:
            raise ConfigError(
                f"{key}.kind", f"unknown kind {kind!r}; allowed: {', '.join(POTENTIAL_KINDS)}"
            )
    return u0
