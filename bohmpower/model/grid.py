"""The uniform 1D grid every single-particle axis shares (atomic units).

Notes
-----
Points are x_i = x_min + i dx, i = 0 .. n_x - 1, with dx = (x_max - x_min) / n_x: x_max itself is the
periodic image of x_min (the FFT treats the cell as periodic, also when absorbing layers are used).
The angular wavenumbers are k_j = 2 pi fftfreq(n_x, dx)_j, in numpy's FFT order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bohmpower.errors import ConfigError

__all__ = ["Grid"]


@dataclass(frozen=True)
class Grid:
    """Uniform periodic grid.

    Parameters
    ----------
    x_min, x_max : float
        Cell edges [bohr]; x_max is not a grid point (periodic image of x_min).
    n_x : int
        Number of points (>= 2).

    Attributes
    ----------
    x : ndarray, shape (n_x,)
        Grid points [bohr] (read-only).
    dx : float
        Spacing [bohr].
    length : float
        Cell length x_max - x_min [bohr].
    k : ndarray, shape (n_x,)
        Angular FFT wavenumbers [1/bohr] in numpy fftfreq order (read-only).
    """

    x_min: float
    x_max: float
    n_x: int
    x: np.ndarray = field(init=False, repr=False, compare=False)
    k: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.x_min) and np.isfinite(self.x_max)) or self.x_max <= self.x_min:
            raise ConfigError(
                "grid.x_max", f"must be greater than grid.x_min (got {self.x_min}, {self.x_max})"
            )
        if int(self.n_x) != self.n_x or self.n_x < 2:
            raise ConfigError("grid.points", f"must be an integer >= 2 (got {self.n_x})")
        object.__setattr__(self, "n_x", int(self.n_x))
        x = self.x_min + np.arange(self.n_x) * self.dx
        k = 2.0 * np.pi * np.fft.fftfreq(self.n_x, d=self.dx)
        x.flags.writeable = False
        k.flags.writeable = False
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "k", k)

    @property
    def length(self) -> float:
        """Cell length x_max - x_min [bohr]."""
        return float(self.x_max - self.x_min)

    @property
    def dx(self) -> float:
        """Grid spacing (x_max - x_min) / n_x [bohr]."""
        return float(self.x_max - self.x_min) / self.n_x

    @property
    def k_max(self) -> float:
        """Largest resolved angular wavenumber pi / dx [1/bohr]."""
        return float(np.pi / self.dx)

    def wrap(self, x: np.ndarray | float) -> np.ndarray | float:
        """Map positions into the cell [x_min, x_max) (periodic images) [bohr]."""
        return self.x_min + np.mod(np.asarray(x, dtype=float) - self.x_min, self.length)


def uniform_grid(x, min_points: int = 2) -> tuple[float, float, int]:
    """(x_min, dx, n_x) of a uniform 1D grid given by its points; ValueError otherwise.

    The one check the propagators, guides and samplers share for grids passed as arrays.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or x.shape[0] < min_points:
        raise ValueError(f"x must be a 1D grid with at least {min_points} points")
    n_x = x.shape[0]
    dx = (x[-1] - x[0]) / (n_x - 1)
    if not np.allclose(np.diff(x), dx, rtol=1e-9, atol=0.0):
        raise ValueError("x must be uniform")
    return float(x[0]), float(dx), n_x
