"""Driving fields: q*phi_i(x, t) = f_i(t) g_i(x) for each [[field]] entry (atomic units, q = -1).

Notes
-----
Each `Drive` holds the spatial shape g(x) [hartree] (``potential_shape``), the force shape
-g'(x) [hartree/bohr] (``force_shape``, the force q E on an electron divided by f(t); computed analytically,
never by differencing) and the time profile f(t) with its exact derivative.

``linear_drop`` (SPEC.md):

    s(x) = 1/2 + (w / 2L) [lncosh((x - x_left)/w) - lncosh((x - x_right)/w)],   L = x_right - x_left
    g(x) = -bias s(x),      -g'(x) = (bias/L) (1/2)[tanh((x - x_left)/w) - tanh((x - x_right)/w)]

with lncosh(z) = |z| + log1p(exp(-2|z|)) - log 2 (stable for any z); w = 0 is the sharp limit
s = clip((x - x_left)/L, 0, 1). On a periodic grid (cell [x_min, x_max), length Lc) a return field of equal
area sits around the seam: ell = 0.2 Lc, s' = ell/24,

    B(x) = (1/2)[tanh((x - x_left)/w) - tanh((x - x_right)/w)]
           - (L/ell) (1/2)[2 - tanh((x - x_min - ell/2)/s') + tanh((x - x_max + ell/2)/s')]

and q*phi = -(bias/L) f(t) G(x), G' = B, G(x_min) = 0, integrated analytically:

    H(x) = (w/2)[lncosh((x - x_left)/w) - lncosh((x - x_right)/w)]
           - (L / (2 ell)) [2 (x - x_min) - s' lncosh((x - c1)/s') + s' lncosh((x - c2)/s')],
    G(x) = H(x) - H(x_min),   c1 = x_min + ell/2,  c2 = x_max - ell/2.

G(x_max) - G(x_min) = integral of B over the cell vanishes up to the tanh tails (exp(-24) for the return
field; exp(-2 d/w) for a ramp whose edges are a distance d from the seam), so G is continuous across the
seam and the field has zero mean over the cell.

``uniform``: g(x) = -force (x - origin), -g' = force (not allowed on periodic grids).

Time profiles: constant 1; turn_on sin^2(pi t / (2 t_on)) for 0 <= t < t_on, 1 after (and 0 for t < 0,
before the run starts); sine sin(2 pi frequency t + phase); gaussian_pulse exp(-(t - t0)^2 / (2 duration^2)).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bohmpower.errors import ConfigError
from bohmpower.model.grid import Grid

__all__ = [
    "RETURN_EDGE_RATIO",
    "RETURN_FIELD_FRACTION",
    "Drive",
    "TimeProfile",
    "lncosh",
    "make_drive",
    "make_drives",
    "periodic_ramp_field",
    "periodic_ramp_shape",
    "ramp",
    "ramp_force",
    "seam_region",
]

logger = logging.getLogger(__name__)

#: Length of the periodic return-field region as a fraction of the cell (ell = 0.2 Lc).
RETURN_FIELD_FRACTION = 0.2
#: Return-field edge width s' = ell / RETURN_EDGE_RATIO.
RETURN_EDGE_RATIO = 24.0


def lncosh(z: np.ndarray | float) -> np.ndarray:
    """ln cosh z evaluated stably: |z| + log1p(exp(-2|z|)) - log 2 (no overflow for large |z|)."""
    a = np.abs(np.asarray(z, dtype=float))
    return a + np.log1p(np.exp(-2.0 * a)) - np.log(2.0)


def ramp(x: np.ndarray, x_left: float, x_right: float, smoothing: float) -> np.ndarray:
    """Rounded linear ramp s(x), 0 far left of x_left, 1 far right of x_right (dimensionless).

    Parameters
    ----------
    x : ndarray
        Positions [bohr].
    x_left, x_right : float
        Ramp ends [bohr], x_left < x_right.
    smoothing : float
        Corner width w [bohr]; 0 gives the piecewise linear ramp.
    """
    x = np.asarray(x, dtype=float)
    length = x_right - x_left
    if smoothing == 0:
        return np.clip((x - x_left) / length, 0.0, 1.0)
    w = smoothing
    return 0.5 + (w / (2.0 * length)) * (lncosh((x - x_left) / w) - lncosh((x - x_right) / w))


def ramp_force(x: np.ndarray, x_left: float, x_right: float, smoothing: float) -> np.ndarray:
    """s'(x) = (1/2L)[tanh((x - x_left)/w) - tanh((x - x_right)/w)] [1/bohr] (sharp top hat for w = 0,
    1/(2L) exactly on an edge)."""
    from bohmpower.model.potentials import window

    return window(x, x_left, x_right, smoothing) / (x_right - x_left)


def _return_params(x_min: float, x_max: float) -> tuple[float, float, float, float]:
    ell = RETURN_FIELD_FRACTION * (x_max - x_min)
    sp = ell / RETURN_EDGE_RATIO
    return ell, sp, x_min + 0.5 * ell, x_max - 0.5 * ell


def periodic_ramp_field(
    x: np.ndarray, x_left: float, x_right: float, smoothing: float, x_min: float, x_max: float
) -> np.ndarray:
    """Field shape B(x) of a ``linear_drop`` on the periodic cell [x_min, x_max) (dimensionless).

    Returns
    -------
    ndarray, shape of ``x``
        B(x) = (ramp top hat) - (L/ell) (return window around the seam); see the module Notes.
    """
    x = np.asarray(x, dtype=float)
    length = x_right - x_left
    ell, sp, c1, c2 = _return_params(x_min, x_max)
    top = ramp_force(x, x_left, x_right, smoothing) * length
    ret = 0.5 * (2.0 - np.tanh((x - c1) / sp) + np.tanh((x - c2) / sp))
    return top - (length / ell) * ret


def _periodic_h(
    x: np.ndarray, x_left: float, x_right: float, smoothing: float, x_min: float, x_max: float
):
    length = x_right - x_left
    ell, sp, c1, c2 = _return_params(x_min, x_max)
    if smoothing == 0:
        top = np.clip(x - x_left, 0.0, length)
    else:
        w = smoothing
        top = 0.5 * w * (lncosh((x - x_left) / w) - lncosh((x - x_right) / w))
    ret = 2.0 * (x - x_min) - sp * lncosh((x - c1) / sp) + sp * lncosh((x - c2) / sp)
    return top - (length / (2.0 * ell)) * ret


def periodic_ramp_shape(
    x: np.ndarray, x_left: float, x_right: float, smoothing: float, x_min: float, x_max: float
) -> np.ndarray:
    """G(x) with G' = B and G(x_min) = 0 on the periodic cell [bohr] (analytic; module Notes)."""
    x = np.asarray(x, dtype=float)
    h0 = _periodic_h(np.array(x_min), x_left, x_right, smoothing, x_min, x_max)
    return _periodic_h(x, x_left, x_right, smoothing, x_min, x_max) - h0


def seam_region(grid: Grid) -> np.ndarray:
    """Boolean mask, shape (n_x,), of the periodic return-field region around the seam.

    Notes
    -----
    The return field is (L/ell) times a window of length ell centred on the seam with tanh edges of width
    s' = ell/24; the mask covers that window widened by 6 s' on its inner side, where the window has fallen
    below exp(-12) ~ 6e-6 of its height. A run whose density reaches these points feels the return field.
    """
    _, sp, c1, c2 = _return_params(grid.x_min, grid.x_max)
    return (grid.x < c1 + 6.0 * sp) | (grid.x > c2 - 6.0 * sp)


@dataclass(frozen=True)
class TimeProfile:
    """f(t) of a drive (dimensionless) and its exact derivative f'(t) [1/a.u. time].

    Parameters
    ----------
    kind : {"constant", "turn_on", "sine", "gaussian_pulse"}
    t_on : float, optional
        turn_on: f = sin^2(pi t / (2 t_on)) for 0 <= t < t_on, 1 after, 0 before t = 0.
    frequency, phase : float, optional
        sine: f = sin(2 pi frequency t + phase) (frequency in cycles per a.u. time; phase in rad, default 0).
    t0, duration : float, optional
        gaussian_pulse: f = exp(-(t - t0)^2 / (2 duration^2)).
    """

    kind: str = "constant"
    t_on: float | None = None
    frequency: float | None = None
    phase: float | None = None
    t0: float | None = None
    duration: float | None = None

    def __call__(self, t: np.ndarray | float) -> np.ndarray | float:
        """f(t), vectorised over t."""
        t_arr = np.asarray(t, dtype=float)
        if self.kind == "constant":
            out = np.ones_like(t_arr)
        elif self.kind == "turn_on":
            out = np.where(t_arr >= self.t_on, 1.0, np.sin(0.5 * np.pi * t_arr / self.t_on) ** 2)
            out = np.where(t_arr < 0, 0.0, out)
        elif self.kind == "sine":
            out = np.sin(2.0 * np.pi * self.frequency * t_arr + (self.phase or 0.0))
        elif self.kind == "gaussian_pulse":
            out = np.exp(-((t_arr - self.t0) ** 2) / (2.0 * self.duration**2))
        else:  # pragma: no cover - validated in make_drive
            raise ValueError(self.kind)
        return out if np.ndim(t) else float(out)

    def dt(self, t: np.ndarray | float) -> np.ndarray | float:
        """f'(t) [1/a.u. time], exact, vectorised over t."""
        t_arr = np.asarray(t, dtype=float)
        if self.kind == "constant":
            out = np.zeros_like(t_arr)
        elif self.kind == "turn_on":
            inside = (t_arr >= 0) & (t_arr < self.t_on)
            # d/dt sin^2(a t) = a sin(2 a t), a = pi / (2 t_on)
            out = np.where(
                inside, (0.5 * np.pi / self.t_on) * np.sin(np.pi * t_arr / self.t_on), 0.0
            )
        elif self.kind == "sine":
            w = 2.0 * np.pi * self.frequency
            out = w * np.cos(w * t_arr + (self.phase or 0.0))
        elif self.kind == "gaussian_pulse":
            tau = t_arr - self.t0
            out = -(tau / self.duration**2) * np.exp(-(tau**2) / (2.0 * self.duration**2))
        else:  # pragma: no cover
            raise ValueError(self.kind)
        return out if np.ndim(t) else float(out)

    @property
    def max_abs(self) -> float:
        """max_t |f(t)| (1 for every profile)."""
        return 1.0


@dataclass(frozen=True)
class Drive:
    """One [[field]] entry: q*phi(x, t) = f(t) g(x).

    Attributes
    ----------
    kind : str
        "linear_drop" or "uniform".
    potential_shape : ndarray, shape (n_x,)
        g(x) on the grid [hartree].
    force_shape : ndarray, shape (n_x,)
        -g'(x) on the grid [hartree/bohr], analytic; equals q E(x, t) / f(t).
    time_profile : TimeProfile
    drop : float
        |g| change across the run's range [hartree]: |bias| for linear_drop, |force| (x_max - x_min) for
        uniform (what the resolution rules count as the drive's potential drop).
    periodic : bool
        True when the periodic return field is included.
    """

    kind: str
    potential_shape: np.ndarray = field(repr=False)
    force_shape: np.ndarray = field(repr=False)
    time_profile: TimeProfile
    drop: float
    periodic: bool
    _g: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    _force: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    _wrap: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)

    def profile(self, t: np.ndarray | float) -> np.ndarray | float:
        """f(t), vectorised over t (dimensionless)."""
        return self.time_profile(t)

    def profile_dt(self, t: np.ndarray | float) -> np.ndarray | float:
        """f'(t), vectorised over t [1/a.u. time]."""
        return self.time_profile.dt(t)

    def potential(self, x: np.ndarray | float) -> np.ndarray:
        """g(x) at arbitrary positions [hartree] (wrapped into the cell on periodic grids)."""
        x = np.asarray(x, dtype=float)
        return self._g(self._wrap(x) if self._wrap is not None else x)

    def force(self, x: np.ndarray | float) -> np.ndarray:
        """-g'(x) at arbitrary positions [hartree/bohr] (wrapped into the cell on periodic grids)."""
        x = np.asarray(x, dtype=float)
        return self._force(self._wrap(x) if self._wrap is not None else x)


def _req(piece: Any, name: str, key: str) -> float:
    value = getattr(piece, name, None)
    if value is None:
        raise ConfigError(
            f"{key}.{name}",
            f"required for this [[field]] (kind = {piece.kind!r}, "
            f"time_profile = {getattr(piece, 'time_profile', 'constant')!r})",
        )
    return float(value)


def _time_profile(piece: Any, key: str) -> TimeProfile:
    kind = getattr(piece, "time_profile", None) or "constant"
    if kind == "constant":
        return TimeProfile("constant")
    if kind == "turn_on":
        t_on = _req(piece, "t_on", key)
        if t_on <= 0:
            raise ConfigError(f"{key}.t_on", f"must be > 0, got {t_on}")
        return TimeProfile("turn_on", t_on=t_on)
    if kind == "sine":
        phase = getattr(piece, "phase", None)
        return TimeProfile(
            "sine", frequency=_req(piece, "frequency", key), phase=float(phase or 0.0)
        )
    if kind == "gaussian_pulse":
        duration = _req(piece, "duration", key)
        if duration <= 0:
            raise ConfigError(f"{key}.duration", f"must be > 0, got {duration}")
        return TimeProfile("gaussian_pulse", t0=_req(piece, "t0", key), duration=duration)
    raise ConfigError(
        f"{key}.time_profile", f"unknown {kind!r}; allowed: constant, turn_on, sine, gaussian_pulse"
    )


def make_drive(
    piece: Any, grid: Grid, periodic: bool, key: str = "field[0]", units: Any = None
) -> tuple[Drive, list[str]]:
    """Build a `Drive` from an atomic-unit ``FieldPiece``.

    Parameters
    ----------
    piece : FieldPiece
        kind, bias, x_left, x_right, smoothing, force, origin, time_profile, t_on, frequency, phase, t0,
        duration (atomic units; unused ones None).
    grid : Grid
    periodic : bool
        True for ``grid.boundary = "periodic"``: linear_drop gets the return field, uniform is refused.
    key : str
        Dotted key prefix for messages ("field[1]").
    units : bohmpower.units.UnitSystem, optional
        The run file's system, for the messages (default atomic).

    Returns
    -------
    drive : Drive
    warnings : list of str
        E.g. a ramp that overlaps the periodic return-field region.
    """
    from bohmpower.units import ATOMIC

    units = ATOMIC if units is None else units
    q = units.quantity
    warnings: list[str] = []
    profile = _time_profile(piece, key)
    x = grid.x
    if piece.kind == "linear_drop":
        bias = _req(piece, "bias", key)
        xl = _req(piece, "x_left", key)
        xr = _req(piece, "x_right", key)
        w = getattr(piece, "smoothing", None)
        w = 0.0 if w is None else float(w)
        if xr <= xl:
            raise ConfigError(f"{key}.x_right", f"must be greater than x_left (got {q(xl, 'length')}, "
                              f"{q(xr, 'length')})")
        if w < 0:
            raise ConfigError(f"{key}.smoothing", f"must be >= 0, got {q(w, 'length')}")
        length = xr - xl
        if periodic:
            x0, x1 = grid.x_min, grid.x_max
            if xl < x0 or xr > x1:
                raise ConfigError(
                    f"{key}.x_left",
                    f"on a periodic grid the ramp {units.interval(xl, xr, 'length', digits=10)} must "
                    f"lie inside the cell {units.interval(x0, x1, 'length', digits=10)}",
                )

            def g(xx: np.ndarray) -> np.ndarray:
                return -(bias / length) * periodic_ramp_shape(xx, xl, xr, w, x0, x1)

            def force(xx: np.ndarray) -> np.ndarray:
                return (bias / length) * periodic_ramp_field(xx, xl, xr, w, x0, x1)

            jump = abs(bias / length) * abs(
                float(periodic_ramp_shape(np.array(x1), xl, xr, w, x0, x1))
            )
            if jump > 1e-8 * max(abs(bias), 1e-300):
                warnings.append(
                    f"{key}: the ramp's corners reach the cell edge, so the periodic drive potential jumps by "
                    f"{q(jump, 'energy', digits=3)} at the seam; keep x_left, x_right several "
                    "smoothing widths from the edges"
                )
            _, sp, c1, c2 = _return_params(x0, x1)
            if xl - 3.0 * w < c1 + 6.0 * sp or xr + 3.0 * w > c2 - 6.0 * sp:
                warnings.append(
                    f"{key}: the ramp {units.interval(xl, xr, 'length', digits=6)} overlaps the periodic "
                    f"return-field region (within {q(c1 + 6 * sp - x0, 'length')} of the seam)"
                )
            drive = Drive(
                "linear_drop", g(x), force(x), profile, abs(bias), True, g, force, grid.wrap
            )
        else:

            def g(xx: np.ndarray) -> np.ndarray:
                return -bias * ramp(xx, xl, xr, w)

            def force(xx: np.ndarray) -> np.ndarray:
                return bias * ramp_force(xx, xl, xr, w)

            drive = Drive("linear_drop", g(x), force(x), profile, abs(bias), False, g, force, None)
    elif piece.kind == "uniform":
        if periodic:
            raise ConfigError(
                f"{key}.kind",
                "a 'uniform' field is not allowed on a periodic grid; use 'linear_drop' "
                "(with its return field) or grid.boundary = 'absorbing'",
            )
        f0 = _req(piece, "force", key)
        origin = getattr(piece, "origin", None)
        origin = 0.0 if origin is None else float(origin)

        def g(xx: np.ndarray) -> np.ndarray:
            return -f0 * (np.asarray(xx, dtype=float) - origin)

        def force(xx: np.ndarray) -> np.ndarray:
            return np.full(np.shape(xx), f0)

        drive = Drive(
            "uniform", g(x), force(x), profile, abs(f0) * grid.length, False, g, force, None
        )
    else:
        raise ConfigError(
            f"{key}.kind", f"unknown kind {piece.kind!r}; allowed: linear_drop, uniform"
        )
    for arr in (drive.potential_shape, drive.force_shape):
        arr.flags.writeable = False
    return drive, warnings


def make_drives(
    pieces: Sequence[Any], grid: Grid, periodic: bool, units: Any = None
) -> tuple[tuple[Drive, ...], list[str]]:
    """`make_drive` for every [[field]] entry, in file order; returns (drives, warnings) (messages in
    ``units``, the run file's system; default atomic)."""
    drives = []
    warnings: list[str] = []
    for i, piece in enumerate(pieces):
        d, w = make_drive(piece, grid, periodic, key=f"field[{i}]", units=units)
        drives.append(d)
        warnings.extend(w)
    return tuple(drives), warnings
