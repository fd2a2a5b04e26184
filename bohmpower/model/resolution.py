"""Resolution rules (SPEC.md "Resolution rules"): is the grid fine enough and dt short enough?

All inputs are explicit numbers in atomic units, so each rule can be tested on its own.

Notes
-----
Wavenumber content of the initial orbitals:

- packet:    k = |k0| + 6 / (2 width)           (width = density standard deviation, so 1/(2 width) is the
                                                 spectral standard deviation: k0 plus 6 of them)
- eigenstate (or any grid orbital): the |k| below which 1 - 1e-10 of the orbital's spectral weight lies

k_content is the maximum over orbitals. The wavenumber reached by falling through the whole drive drop and
the largest interaction energy is

    k_reach = sqrt(k_content^2 + 2 m (|total bias| + W_max))

(|total bias| = sum over drives of |bias|, or |force| times the grid length for a `uniform` field; each
profile has |f(t)| <= 1, so that is the most the drives can give.) Rules, with
numerics.resolution_fraction (0.8), max_phase (1 rad) and warn_phase (pi):

1. refuse on "grid.points" when k_reach > resolution_fraction * pi / dx; the message gives the minimum
   number of points, ceil(length k_reach / (resolution_fraction pi)) made even (grid.points must be);
2. refuse on "time.dt" when the phase per step phi = dt (k_reach^2 / 2m + potential range) exceeds the
   limit of the propagator's order p, kappa_p max_phase^(2/p) (kappa_2 = 1, so order 2 is refused above
   max_phase itself; see "Phase per step by order"), with potential range = max U0 - min U0 +
   |total bias| + W_max; the message gives the largest dt allowed (rounded down) and, when t_end is
   known, a dt below it that makes t_end/dt (and window/dt) whole numbers;
3. warn when dt (pi/dx)^2 / 2m > warn_phase (the grid's largest kinetic phase per step).

At equality a rule passes (refusal is strictly above the threshold).

Messages write every number in the run file's unit system (the ``units`` argument, a
`bohmpower.units.UnitSystem`; atomic by default), through `UnitSystem.quantity`.

Phase per step by order (rule 2). A splitting of order p makes a local error of about c_p phi^(p+1)
per step (its nested commutators of T and V bounded by powers of the energy E = phi/dt of the rule), so
after a run of total phase Phi = E t_end (Phi/phi steps) the state error is

    err_p ~ c_p Phi phi^p.

max_phase is the tolerance, stated as a phase of order 2 (the lowest order): order 2 at phi = max_phase
makes err_2 = c_2 Phi max_phase^2. Order p is allowed the phase at which its error is ORDER_ERROR_MARGIN
(10) times smaller, err_p(phi_p) = err_2(max_phase) / 10; Phi cancels, so the limit is a phase per step
like order 2's:

    phi_p = (c_2 / (10 c_p))^(1/p) max_phase^(2/p) = kappa_p max_phase^(2/p).

The asymptotic constants alone would overstate kappa_p: measured c_2/c_4 ~ 1.2e5 (demo and a collision,
scripts/bench_exact.py --orders) gives 10 rad, but the optimised methods leave their asymptotic range
above ~1.5 rad (the error then grows as phi^8 to phi^10: the next orders' terms). So kappa_p is the
measured phase (at max_phase = 1) where err_p reaches err_2(1 rad)/10, the smallest over the
calibration cases of benchmarks/README.md, rounded down (ORDER_PHASE_FACTOR). Scaling it by
max_phase^(2/p) is exact in the asymptotic range and safe above it for max_phase < 1 (the error falls at
least as fast as phi^p when phi decreases); for max_phase > 1 it extrapolates into the range where the
error grows faster, so a looser tolerance than order 2's default is extrapolated for the higher orders.
Only exact runs choose an order (numerics.order); conditional-wavefunction runs are order 2.

Memory of an exact run (`exact_memory_bytes`): 16 n_x^N bytes per complex N-d array, counting 2 for the
propagator (psi and one FFT work array) and 8 for the observables (psi's first and second derivatives
along an axis, H psi, h_k psi and their products for the power terms, and the 2x zero-padded marginal
workspace counted as two), 10 in all. An exact run is refused on "grid.points" when this exceeds
numerics.max_memory_gb (GB = 1e9 bytes; default half the physical memory, from os.sysconf).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np

from bohmpower.errors import ConfigError
from bohmpower.units import ATOMIC, UnitSystem, format_number

__all__ = [
    "EXACT_ARRAYS",
    "SPECTRAL_WEIGHT_FRACTION",
    "ResolutionReport",
    "check_exact_memory",
    "check_grid_resolution",
    "check_time_step",
    "exact_memory_bytes",
    "grid_phase_warning",
    "k_reach",
    "maximum_dt",
    "minimum_points",
    "orbital_k_content",
    "packet_k_content",
    "phase_limit",
    "physical_memory_bytes",
    "resolve",
    "whole_step_dt",
]

logger = logging.getLogger(__name__)

#: An orbital's wavenumber content is where this fraction of its spectral weight lies below.
SPECTRAL_WEIGHT_FRACTION = 1.0 - 1e-10
#: Complex N-d arrays an exact run holds at once (2 propagator + 8 observables).
EXACT_ARRAYS = 10
#: An order-p run is allowed the phase per step at which its error stays this many times below the
#: error of order 2 at max_phase (module Notes, "Phase per step by order").
ORDER_ERROR_MARGIN = 10.0
#: kappa_p of the per-order limit kappa_p max_phase^(2/p) (module Notes; benchmarks/README.md).
ORDER_PHASE_FACTOR = {2: 1.0, 4: 3.0, 6: 4.5}


def packet_k_content(wavenumber: float, width: float) -> float:
    """|k0| + 6/(2 width) [1/bohr] of a Gaussian packet with density standard deviation ``width``."""
    return abs(wavenumber) + 6.0 / (2.0 * width)


def orbital_k_content(
    orbital: np.ndarray, k: np.ndarray, fraction: float = SPECTRAL_WEIGHT_FRACTION
) -> float:
    """Smallest |k| [1/bohr] below which ``fraction`` of the orbital's spectral weight lies.

    Parameters
    ----------
    orbital : ndarray, shape (n_x,)
        Orbital on the grid.
    k : ndarray, shape (n_x,)
        The grid's angular FFT wavenumbers (`Grid.k`).
    fraction : float
        Spectral-weight fraction (default 1 - 1e-10).
    """
    w = np.abs(np.fft.fft(orbital)) ** 2
    order = np.argsort(np.abs(k), kind="stable")
    cum = np.cumsum(w[order])
    i = int(np.searchsorted(cum, fraction * cum[-1]))
    return float(np.abs(k[order][min(i, len(k) - 1)]))


def k_reach(k_content: float, mass: float, bias_drop: float, w_max: float) -> float:
    """sqrt(k_content^2 + 2 m (|bias| + W_max)) [1/bohr]."""
    return math.sqrt(k_content**2 + 2.0 * mass * (abs(bias_drop) + abs(w_max)))


def minimum_points(length: float, k: float, resolution_fraction: float) -> int:
    """Fewest grid points with k <= resolution_fraction pi / dx, dx = length / n, rounded up to an even
    number of at least 8 (what grid.points allows)."""
    n = math.ceil(length * k / (resolution_fraction * math.pi) - 1e-12)
    return max(8, n + n % 2)


def phase_limit(max_phase: float, order: int = 2) -> float:
    """Largest phase per step [rad] allowed to a propagator of ``order``: kappa_p max_phase^(2/p)
    (module Notes, "Phase per step by order"); ``max_phase`` itself for order 2."""
    if order not in ORDER_PHASE_FACTOR:
        raise ValueError(f"no phase rule for order {order}: orders {sorted(ORDER_PHASE_FACTOR)}")
    if order == 2:
        return float(max_phase)
    return ORDER_PHASE_FACTOR[order] * float(max_phase) ** (2.0 / order)


def maximum_dt(k: float, mass: float, potential_range: float, max_phase: float) -> float:
    """Largest dt with dt (k^2/2m + potential range) <= max_phase [a.u. time]."""
    return max_phase / (k**2 / (2.0 * mass) + potential_range)


def whole_step_dt(
    dt_max: float, t_end: float, window: float | None = None, units: UnitSystem = ATOMIC
) -> str | None:
    """A time step to write in the run file: <= dt_max, with t_end/dt (and window/dt) whole numbers.

    Parameters
    ----------
    dt_max : float
        Largest dt allowed [a.u. time].
    t_end : float
        [a.u. time].
    window : float, optional
        time.window when the run file gives it [a.u. time] (None: save_every*dt, always whole).
    units : UnitSystem
        The run file's system: the candidate is written, and checked, as a number of that system.

    Returns
    -------
    str or None
        The number as it is to be written (no unit), or None when no step count up to 1.25 times
        the smallest one (and at most 4000 counts tried) gives whole numbers.

    Notes
    -----
    Among the step counts n from ceil(t_end/dt_max) up to 1.25 times that, dt = t_end/n written with
    the fewest significant digits (at most 10, rounded down) wins; ties go to the smallest n. The
    written number itself is checked against the whole-number rule of the run file (time.dt).
    """
    from bohmpower.config import STEP_TOLERANCE

    t_end_u = units.from_atomic(float(t_end), "time")
    dt_max_u = units.from_atomic(float(dt_max), "time")
    window_u = None if window is None else units.from_atomic(float(window), "time")

    def whole(span: float, dt: float) -> bool:
        n = round(span / dt)
        return n >= 1 and abs(span / dt - n) <= 0.1 * STEP_TOLERANCE * n

    n_min = max(1, math.ceil(t_end_u / dt_max_u - 1e-12))
    best: tuple[int, int, str] | None = None
    for n in range(n_min, min(math.ceil(1.25 * n_min), n_min + 4000) + 1):
        for digits in range(1, 11):
            text = format_number(t_end_u / n, digits, "down")
            dt = float(text)
            if (0 < dt <= dt_max_u and whole(t_end_u, dt)
                    and (window_u is None or whole(window_u, dt))):
                if best is None or digits < best[0]:
                    best = (digits, n, text)
                break
        if best is not None and best[0] == 1:
            break
    return None if best is None else best[2]


def check_grid_resolution(k: float, length: float, n_x: int, resolution_fraction: float,
                          units: UnitSystem = ATOMIC) -> None:
    """Rule 1: refuse on "grid.points" when k > resolution_fraction pi / dx.

    Parameters
    ----------
    k : float
        k_reach [1/bohr].
    length : float
        Cell length [bohr].
    n_x : int
        Grid points.
    resolution_fraction : float
        Allowed fraction of pi / dx.
    units : UnitSystem
        The run file's system, for the message.
    """
    dx = length / n_x
    k_allowed = resolution_fraction * math.pi / dx
    if k > k_allowed:
        n_min = minimum_points(length, k, resolution_fraction)
        fraction = k * dx / math.pi  # the resolution_fraction at which these points would pass
        up = format_number(fraction, 3, "up")
        other = (f"set numerics.resolution_fraction = {up}"
                 if float(up) <= 1.0 else "")  # allowed: 0 < resolution_fraction <= 1
        raise ConfigError(
            "grid.points",
            f"the run reaches wavenumber {units.quantity(k, 'wavenumber')} (packets' content plus "
            "falling through the bias and the largest interaction energy), above "
            f"{resolution_fraction:g} pi/dx = {units.quantity(k_allowed, 'wavenumber')}: use at least "
            f"{n_min} points" + (f" (or {other})" if other else ""),
        )


def check_time_step(
    k: float,
    mass: float,
    potential_range: float,
    dt: float,
    max_phase: float,
    *,
    t_end: float | None = None,
    window: float | None = None,
    units: UnitSystem = ATOMIC,
    order: int = 2,
) -> None:
    """Rule 2: refuse on "time.dt" when dt (k^2/2m + potential range) > phase_limit(max_phase, order).

    ``t_end`` and ``window`` (a.u. time, optional) let the message name a dt that also divides them
    (`whole_step_dt`); ``units`` is the run file's system, for the message; ``order`` is the
    propagator's (numerics.order of an exact run; 2 otherwise).
    """
    phase = dt * (k**2 / (2.0 * mass) + potential_range)
    limit = phase_limit(max_phase, order)
    if phase > limit:
        dt_max = maximum_dt(k, mass, potential_range, limit)
        q = units.quantity
        bound, example = _dt_hint(dt_max, t_end, window, units, digits=6)
        hint = f"use {bound}{example}"
        if order == 2:
            above = f"above numerics.max_phase = {max_phase:g}"
        else:
            above = (f"above the order-{order} limit {limit:.4g} rad ({ORDER_PHASE_FACTOR[order]:g} "
                     f"numerics.max_phase^(2/{order}), numerics.max_phase = {max_phase:g})")
        raise ConfigError(
            "time.dt",
            f"dt = {q(dt, 'time')} gives a phase of {phase:.4g} rad per step (kinetic energy "
            f"{q(k**2 / (2 * mass), 'energy')} plus potential range {q(potential_range, 'energy')}), "
            f"{above}: {hint}",
        )


def _dt_hint(dt_max: float, t_end: float | None, window: float | None, units: UnitSystem,
             digits: int) -> tuple[str, str]:
    """("dt <= 0.598 fs", ", e.g. dt = 0.5 fs (t_end/dt and window/dt whole numbers)"); the second
    is empty when t_end is not known or no such dt is found."""
    q = units.quantity
    bound = f"dt <= {q(dt_max, 'time', digits=digits, rounding='down')}"
    example = ""
    if t_end is not None:
        written = whole_step_dt(dt_max, t_end, window, units)
        if written is not None:
            span = ("t_end/dt and window/dt whole numbers" if window is not None
                    else "t_end/dt a whole number")
            example = (f", e.g. dt = {q(float(written), 'time', converted=True, digits=10)} "
                       f"({span})")
    return bound, example


def grid_phase_warning(dx: float, mass: float, dt: float, warn_phase: float,
                       units: UnitSystem = ATOMIC, *, t_end: float | None = None,
                       window: float | None = None) -> list[str]:
    """Rule 3: a warning when dt (pi/dx)^2 / 2m > warn_phase (``t_end``, ``window``: for the dt
    the message suggests, as in `check_time_step`)."""
    phase = dt * (math.pi / dx) ** 2 / (2.0 * mass)
    if phase > warn_phase:
        dt_warn = warn_phase * 2.0 * mass * (dx / math.pi) ** 2  # the dt at which phase = warn_phase
        bound, example = _dt_hint(dt_warn, t_end, window, units, digits=3)
        return [
            (
                f"time.dt: the grid's largest kinetic energy (pi/dx)^2/2m advances {phase:.4g} rad per step "
                f"(> numerics.warn_phase = {warn_phase:.4g}); components near the grid's cut-off are not "
                f"resolved in time: {bound} keeps them below it{example}"
            )
        ]
    return []


def exact_memory_bytes(n_x: int, n_particles: int) -> int:
    """Bytes of an exact run: EXACT_ARRAYS (10) complex128 arrays of shape (n_x,)*N (module Notes)."""
    return EXACT_ARRAYS * 16 * int(n_x) ** int(n_particles)


def physical_memory_bytes() -> int | None:
    """Physical memory from os.sysconf, or None when unavailable."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_exact_memory(n_x: int, n_particles: int, max_memory_gb: float | None) -> int:
    """Refuse on "grid.points" an exact run needing more than max_memory_gb (None: half the physical
    memory); return the estimate in bytes."""
    need = exact_memory_bytes(n_x, n_particles)
    if max_memory_gb is None:
        phys = physical_memory_bytes()
        if phys is None:
            return need
        limit = 0.5 * phys
        origin = "half the physical memory"
    else:
        limit = float(max_memory_gb) * 1e9
        origin = "numerics.max_memory_gb"
    if need > limit:
        n_max = math.floor((limit / (EXACT_ARRAYS * 16)) ** (1.0 / n_particles))
        n_max -= n_max % 2  # grid.points must be even
        memory = f"numerics.max_memory_gb = {format_number(need / 1e9, 3, 'up')}"
        hint = (f"use at most {n_max} points (or set {memory})" if n_max >= 8
                else f"no grid of 8 points fits that limit: set {memory}")
        raise ConfigError(
            "grid.points",
            f"an exact run with {n_particles} electrons on {n_x} points needs about {need / 1e9:.3g} GB "
            f"({EXACT_ARRAYS} arrays of {n_x}^{n_particles} complex numbers), more than {limit / 1e9:.3g} GB "
            f"({origin}): {hint}",
        )
    return need


@dataclass(frozen=True)
class ResolutionReport:
    """What the resolution rules saw and decided (atomic units), for `bohmpower check` and the result file.

    Attributes
    ----------
    k_content : float
        Max wavenumber content of the initial orbitals [1/bohr].
    k_reach : float
        [1/bohr].
    k_grid : float
        pi / dx [1/bohr].
    bias_drop : float
        |total bias| [hartree].
    w_max : float
        [hartree].
    potential_range : float
        max U0 - min U0 + bias_drop + w_max [hartree].
    phase : float
        dt (k_reach^2/2m + potential_range) [rad].
    phase_limit : float
        The largest phase rule 2 allows at the run's order [rad].
    order : int
        The propagator order rule 2 was applied for.
    grid_phase : float
        dt (pi/dx)^2/2m [rad].
    min_points : int
        Fewest grid points rule 1 allows.
    max_dt : float
        Largest dt rule 2 allows at the run's order [a.u. time].
    memory_bytes : int or None
        Exact-run estimate (None for conditional-wavefunction runs).
    warnings : tuple of str
    """

    k_content: float
    k_reach: float
    k_grid: float
    bias_drop: float
    w_max: float
    potential_range: float
    phase: float
    grid_phase: float
    min_points: int
    max_dt: float
    memory_bytes: int | None = None
    warnings: tuple[str, ...] = field(default=())
    phase_limit: float = 1.0
    order: int = 2


def resolve(
    *,
    k_content: float,
    mass: float,
    length: float,
    n_x: int,
    dt: float,
    u0_range: float,
    bias_drop: float,
    w_max: float,
    resolution_fraction: float = 0.8,
    max_phase: float = 1.0,
    warn_phase: float = math.pi,
    n_particles: int | None = None,
    max_memory_gb: float | None = None,
    t_end: float | None = None,
    window: float | None = None,
    units: UnitSystem = ATOMIC,
    order: int = 2,
) -> ResolutionReport:
    """Apply all rules; raise ConfigError on a refusal, else return the report (with warnings).

    Parameters
    ----------
    k_content : float
        [1/bohr]
    mass : float
        [m_e]
    length : float
        Cell length [bohr].
    n_x : int
    dt : float
        [a.u. time]
    u0_range : float
        max U0 - min U0 on the grid [hartree].
    bias_drop : float
        |total bias| [hartree].
    w_max : float
        Largest interaction energy [hartree].
    resolution_fraction, max_phase, warn_phase : float
        numerics thresholds.
    n_particles : int, optional
        Given for exact runs: the memory rule is applied.
    max_memory_gb : float, optional
    t_end, window : float, optional
        [a.u. time]; for the dt hint (`check_time_step`).
    units : UnitSystem
        The run file's unit system: every message is written in it.
    order : int
        Propagator order for rule 2 (numerics.order of an exact run; 2 for conditional wavefunctions).
    """
    kr = k_reach(k_content, mass, bias_drop, w_max)
    check_grid_resolution(kr, length, n_x, resolution_fraction, units)
    prange = float(u0_range) + abs(bias_drop) + abs(w_max)
    check_time_step(kr, mass, prange, dt, max_phase, t_end=t_end, window=window, units=units,
                    order=order)
    dx = length / n_x
    warnings = grid_phase_warning(dx, mass, dt, warn_phase, units, t_end=t_end, window=window)
    memory = None
    if n_particles is not None:
        memory = check_exact_memory(n_x, n_particles, max_memory_gb)
    return ResolutionReport(
        k_content=float(k_content),
        k_reach=kr,
        k_grid=math.pi / dx,
        bias_drop=abs(bias_drop),
        w_max=abs(w_max),
        potential_range=prange,
        phase=dt * (kr**2 / (2.0 * mass) + prange),
        grid_phase=dt * (math.pi / dx) ** 2 / (2.0 * mass),
        min_points=minimum_points(length, kr, resolution_fraction),
        max_dt=maximum_dt(kr, mass, prange, phase_limit(max_phase, order)),
        memory_bytes=memory,
        warnings=tuple(warnings),
        phase_limit=phase_limit(max_phase, order),
        order=int(order),
    )
