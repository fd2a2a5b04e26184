"""Volumes Omega = [a, b] and the two linear functionals every volume observable uses (atomic units).

A volume has a window function Theta(x): sharp (the indicator of [a, b]) or smooth,

    Theta_s(x) = (1/2) [tanh((x - a)/s) - tanh((x - b)/s)],
    Theta_s'(x) = (1/(2s)) [sech^2((x - a)/s) - sech^2((x - b)/s)],

and s -> 0 recovers the sharp volume (THEORY.md section 2). Every volume observable is one of

    integral(f)        = integral Theta(x) f(x) dx          (N_Omega, E_Omega, P_Omega, ...)
    edge_functional(f) = integral Theta'(x) f(x) dx         (= f(a) - f(b) for a sharp volume:
                                                              inflow at a minus outflow at b)

applied to a 1D marginal f sampled on the 2x-refined periodic grid y_i = x_min + i dx/2,
i = 0 .. 2 n_x - 1 (docs/design.md).

Notes
-----
Sharp volumes (s = 0) use the trigonometric interpolant of the samples,
f(x) = sum_q c_q exp(i k_q (x - x_min)), c = FFT(f)/M, integrated analytically:

    integral_a^b f dx = c_0 (b - a) + sum_{q != 0} c_q (exp(i k_q (b - x_min)) - exp(i k_q (a - x_min))) / (i k_q),

and the edge values f(a), f(b) evaluated from the same interpolant. The marginals of bohmpower are
products of two band-limited factors formed on the 2x grid, so their interpolant is exact and E_Omega
varies smoothly when an edge moves by less than a grid spacing. The Nyquist coefficient (absent from such
products, present in general samples) is read as a real cosine, so a real f has a real interpolant.
Both functionals are linear in f, so they are applied as dot products with quadrature weights that
depend only on the grid and the volume (:func:`quadrature_weights`).

Smooth volumes use the rectangle rule on the 2x grid, h sum_i Theta(y_i) f(y_i). It is exact for a
periodic integrand whose spectrum lies inside the 2x grid's band; Theta_s has a spectrum falling like
exp(-pi k s / 2), so with sample spacing h the rule is accurate to ~exp(-pi^2 s / h)
(= exp(-2 pi^2 s / dx) on the 2x grid): it needs s >~ dx, the original grid spacing (s = dx gives
~1e-9 relative). For sharper edges use s = 0.

On a periodic cell of length L an interval may wrap: a volume with x_min < x_max <= x_min + L is read
modulo L (Theta is periodised over the images x + m L), so the complement of [a, b] is [b, a + L]
(:meth:`Volume.complement`), and Theta + Theta_complement = 1 exactly (sharp) or to ~exp(-2L/s).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from bohmpower.errors import ConfigError

__all__ = ["Volume", "edge_functional", "fine_grid_params", "integral", "quadrature_weights"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# Periodic images summed when Theta is periodised: enough that the omitted tails are ~exp(-2 L / s).
_IMAGES = (-2, -1, 0, 1, 2)


@dataclass(frozen=True)
class Volume:
    """A 1D volume Omega = [x_min, x_max] with sharp or tanh-smoothed edges.

    Parameters
    ----------
    name : str
        Matches [A-Za-z0-9_-]+ (used as an HDF5 group name).
    x_min, x_max : float
        Edges a < b [bohr].
    smoothing : float
        Edge width s [bohr]; 0 means sharp edges.
    """

    name: str
    x_min: float
    x_max: float
    smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError("volume.name", f"must match [A-Za-z0-9_-]+, got {self.name!r}")
        if not (np.isfinite(self.x_min) and np.isfinite(self.x_max)) or not self.x_max > self.x_min:
            raise ConfigError(
                "volume.x_max",
                f"volume {self.name!r}: x_max must be greater than x_min (got {self.x_min}, {self.x_max})",
            )
        if not (np.isfinite(self.smoothing) and self.smoothing >= 0):
            raise ConfigError(
                "volume.smoothing", f"volume {self.name!r}: must be >= 0 (0 = sharp), got {self.smoothing}"
            )
        object.__setattr__(self, "x_min", float(self.x_min))
        object.__setattr__(self, "x_max", float(self.x_max))
        object.__setattr__(self, "smoothing", float(self.smoothing))

    @property
    def sharp(self) -> bool:
        """True when the edges are sharp (smoothing == 0)."""
        return self.smoothing == 0.0

    def complement(self, period: float, name: str | None = None) -> Volume:
        """The rest of a periodic cell of length ``period``: [x_max, x_min + period], same smoothing.

        Parameters
        ----------
        period : float
            Cell length L [bohr]; must be >= x_max - x_min.
        name : str, optional
            Defaults to ``<name>_complement``.
        """
        if self.x_max - self.x_min > period:
            raise ValueError(f"volume {self.name!r} is longer than the cell ({period})")
        return Volume(name or f"{self.name}_complement", self.x_max, self.x_min + period, self.smoothing)

    def _images(self, x: np.ndarray, period: float | None) -> list[np.ndarray]:
        if period is None:
            return [x]
        return [x + m * period for m in _IMAGES]

    def theta(self, x: np.ndarray | float, period: float | None = None) -> np.ndarray:
        """Window function Theta(x) (dimensionless), vectorised, shape of ``x``.

        Parameters
        ----------
        x : array_like
            Positions [bohr].
        period : float, optional
            Cell length L [bohr]: when given, Theta is periodised (sum over images x + m L).

        Notes
        -----
        Sharp: 1 inside, 0 outside and 1/2 exactly at an edge (the s -> 0 limit of the tanh form).
        """
        x = np.asarray(x, dtype=float)
        a, b, s = self.x_min, self.x_max, self.smoothing
        out = np.zeros_like(x)
        for xi in self._images(x, period):
            if s == 0.0:
                out += 0.5 * (np.sign(xi - a) - np.sign(xi - b))
            else:
                out += 0.5 * (np.tanh((xi - a) / s) - np.tanh((xi - b) / s))
        return out

    def dtheta(self, x: np.ndarray | float, period: float | None = None) -> np.ndarray:
        """Theta'(x) [1/bohr] of a smooth volume, vectorised, shape of ``x``.

        Raises
        ------
        ValueError
            For a sharp volume, whose Theta' is a pair of delta functions: use
            :func:`edge_functional` instead.
        """
        if self.sharp:
            raise ValueError(
                f"volume {self.name!r} is sharp: Theta' = delta(x - a) - delta(x - b); use edge_functional"
            )
        x = np.asarray(x, dtype=float)
        a, b, s = self.x_min, self.x_max, self.smoothing
        out = np.zeros_like(x)
        for xi in self._images(x, period):
            out += 0.5 / s * (np.tanh((xi - b) / s) ** 2 - np.tanh((xi - a) / s) ** 2)
        return out


def fine_grid_params(fine_grid: Any, n_points: int) -> tuple[float, float]:
    """(x_min, length) of a periodic grid given as a Grid-like object or as its points.

    Parameters
    ----------
    fine_grid : object with ``x_min`` and ``x_max``, or ndarray, shape (M,)
        The grid the samples live on (x_max the periodic image of x_min), or its M equally spaced points.
    n_points : int
        Number of samples M.
    """
    if hasattr(fine_grid, "x_min") and hasattr(fine_grid, "x_max"):
        return float(fine_grid.x_min), float(fine_grid.x_max - fine_grid.x_min)
    pts = np.asarray(fine_grid, dtype=float)
    if pts.ndim != 1 or pts.shape[0] != n_points or n_points < 2:
        raise ValueError(f"fine_grid: expected a Grid or {n_points} equally spaced points")
    return float(pts[0]), float(n_points * (pts[1] - pts[0]))


def quadrature_weights(
    fine_grid: Any, n_points: int, volume: Volume
) -> tuple[np.ndarray, np.ndarray]:
    """Weights w, w' with integral Theta f = w . f and integral Theta' f = w' . f.

    Parameters
    ----------
    fine_grid : Grid-like or ndarray
        See :func:`fine_grid_params`.
    n_points : int
        Number of samples M (2 n_x for the refined grid).
    volume : Volume

    Returns
    -------
    w : ndarray, shape (M,)
        [bohr] weights of :func:`integral`.
    w_edge : ndarray, shape (M,)
        Dimensionless weights of :func:`edge_functional`.

    Notes
    -----
    Sharp: with c_q = (1/M) sum_i f_i exp(-2 pi i q i / M), the analytic integral is
    Re sum_q c_q I_q with I_q = integral_a^b exp(i k_q (x - x_min)) dx, so
    w_i = Re[(1/M) sum_q I_q exp(-2 pi i q i / M)] = Re[IFFT-like sum], computed by one FFT of I
    (likewise for the edge values with E_q = exp(i k_q (a - x_min)) - exp(i k_q (b - x_min))).
    Smooth: w_i = h Theta(y_i), w'_i = h Theta'(y_i), h = L/M, Theta periodised.
    """
    x0, length = fine_grid_params(fine_grid, n_points)
    m = n_points
    h = length / m
    if not volume.sharp:
        y = x0 + h * np.arange(m)
        return h * volume.theta(y, period=length), h * volume.dtheta(y, period=length)
    q = np.fft.fftfreq(m, d=1.0 / m)  # integer mode numbers, fftfreq order
    kq = 2.0 * np.pi * q / length
    a = volume.x_min - x0
    b = volume.x_max - x0
    with np.errstate(divide="ignore", invalid="ignore"):
        i_q = (np.exp(1j * kq * b) - np.exp(1j * kq * a)) / (1j * kq)
    i_q[0] = b - a
    e_q = np.exp(1j * kq * a) - np.exp(1j * kq * b)
    if m % 2 == 0:
        # Nyquist coefficient read as c cos(k_N (x - x_min)): its integral and edge values.
        kn = abs(kq[m // 2])
        i_q[m // 2] = (np.sin(kn * b) - np.sin(kn * a)) / kn
        e_q[m // 2] = np.cos(kn * a) - np.cos(kn * b)
    # w_i = (1/M) sum_q I_q exp(-2 pi i q i / M) = FFT(I)_i / M
    w = np.fft.fft(i_q).real / m
    w_edge = np.fft.fft(e_q).real / m
    return w, w_edge


def integral(f_fine: np.ndarray, fine_grid: Any, volume: Volume) -> np.ndarray | float:
    """Integral of Theta(x) f(x) over the cell.

    Parameters
    ----------
    f_fine : ndarray, shape (..., M)
        Real samples of f on the periodic grid (last axis) [units of f].
    fine_grid : Grid-like or ndarray, shape (M,)
        That grid (see :func:`fine_grid_params`).
    volume : Volume

    Returns
    -------
    float or ndarray, shape (...)
        integral Theta f dx [units of f * bohr].
    """
    f_fine = np.asarray(f_fine, dtype=float)
    w, _ = quadrature_weights(fine_grid, f_fine.shape[-1], volume)
    out = f_fine @ w
    return float(out) if np.ndim(out) == 0 else out


def edge_functional(f_fine: np.ndarray, fine_grid: Any, volume: Volume) -> np.ndarray | float:
    """Integral of Theta'(x) f(x): f(a) - f(b) for a sharp volume (inflow at a minus outflow at b).

    Parameters
    ----------
    f_fine : ndarray, shape (..., M)
        Real samples of f on the periodic grid (last axis) [units of f].
    fine_grid : Grid-like or ndarray, shape (M,)
    volume : Volume

    Returns
    -------
    float or ndarray, shape (...)
        [units of f].
    """
    f_fine = np.asarray(f_fine, dtype=float)
    _, w_edge = quadrature_weights(fine_grid, f_fine.shape[-1], volume)
    out = f_fine @ w_edge
    return float(out) if np.ndim(out) == 0 else out
