"""Complex absorbing layers: Gamma(x), their reflection plus transmission, and the default strength.

Notes
-----
The Hamiltonian gains -i Gamma(x) per electron (THEORY.md section 6) with, for boundary = "absorbing",

    Gamma(x) = strength (d / width)^2   inside each layer, 0 elsewhere,

d being the depth into the layer measured from its inner edge: d = (x_min + width) - x in the left layer
[x_min, x_min + width], d = x - (x_max - width) in the right layer [x_max - width, x_max].

What a layer lets back. The propagator is spectral, so the cell is periodic: a wave leaving through x_max
re-enters at x_min. A packet heading out therefore crosses the right layer (Gamma rising from 0 to strength
over ``width``) and then the left one (falling back to 0), a single absorbing path of length 2 width with the
profile Gamma(d) = strength (d/w)^2 for d < w and strength ((2w - d)/w)^2 for w < d < 2w. The probability
that remains in the simulation is R + T, reflection back plus transmission through that whole path, both
landing in the physical region. `absorber_reflection_transmission` computes it from the stationary equation

    -(1/2m) psi'' - i Gamma(d) psi = E psi,   E = k^2 / 2m,

with transfer matrices on a fine piecewise-constant (midpoint) grid of n_slabs slabs: in a slab with
Gamma_j, q_j = sqrt(2m (E + i Gamma_j)) and (psi, psi') is advanced exactly. The wave is integrated
backwards from the transmitted side, psi = t e^{ikd} on the far side, where it grows, so that tiny
transmissions keep full relative precision; at d = 0 it is split into incident and reflected waves. The
error is O(h^2) in the slab width h (the test halves h). The sweep is one numba pass per wavenumber
(:mod:`bohmpower.model._absorber_kernels`); the slab matrices come from their Taylor series in (q h)^2
(no complex cos, sin or sqrt) where |q h| <= 0.2, which the default slab count guarantees, so the
strength search that `build_model` runs at every command start costs 0.07-0.3 s (0.5-2 s before,
benchmarks/README.md).
(``wrap=False`` gives the single layer followed by free space, for comparison.)

Choice of the wavenumber range of a run (`absorber_k_range`):

- k_hi = k_reach of the resolution rules (the fastest wavenumber the run can produce: the packets' content
  plus falling through the whole bias and the largest interaction energy);
- k_lo = the slowest appreciable wavenumber of the packets, min over packets of |k0| - 3 sigma_k with
  sigma_k = 1/(2 width) the packet's spectral standard deviation (3 sigma_k leaves 1.3e-3 of a packet's
  probability below), floored at k_floor = 2 pi / absorber_width (a wave longer than the layer cannot be
  absorbed without reflection, whatever the strength: slower components than that are outside the range
  any layer of this width can treat, and are reported as such by `bohmpower check`). Runs without packets
  (eigenstates, many_body_state) use k_lo = k_floor.

`default_absorber_strength` minimises max over [k_lo, k_hi] of R + T over log(strength) and returns the
achieved maximum, so `bohmpower check` can report it (SPEC: < 1e-3; a warning otherwise).

When the layers let back more than that, `minimum_absorber_width` finds the width to write instead: the
narrowest one (within 3 % and rounded up to 3 significant digits in the run's length unit) whose automatic
strength keeps max R + T <= 1e-3 over the range that width would be judged on (a wider layer lowers
k_floor, so the range is recomputed for each candidate). The rounded value is checked with exactly the
computation `build_model` makes when it is written into the run file.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import minimize_scalar

from . import _absorber_kernels

__all__ = [
    "ABSORBER_TOLERANCE",
    "absorber_k_range",
    "absorber_reflection_transmission",
    "default_absorber_strength",
    "gamma",
    "minimum_absorber_width",
]

logger = logging.getLogger(__name__)

#: SPEC.md: reflection plus transmission through the layer must stay below this probability.
ABSORBER_TOLERANCE = 1e-3


def gamma(x: np.ndarray, x_min: float, x_max: float, width: float, strength: float) -> np.ndarray:
    """Absorbing potential Gamma(x) >= 0 [hartree] (the Hamiltonian term is -i Gamma).

    Parameters
    ----------
    x : ndarray
        Positions [bohr] (grid points, inside [x_min, x_max]).
    x_min, x_max : float
        Cell edges [bohr]; layers are [x_min, x_min + width] and [x_max - width, x_max].
    width : float
        Layer width [bohr], 0 < 2 width < x_max - x_min.
    strength : float
        Gamma at the outer edge of each layer [hartree].

    Returns
    -------
    ndarray, shape of ``x``
    """
    x = np.asarray(x, dtype=float)
    d_left = (x_min + width) - x
    d_right = x - (x_max - width)
    d = np.maximum(np.maximum(d_left, d_right), 0.0)
    return strength * (d / width) ** 2


def _path_profile(s: np.ndarray, width: float, strength: float, wrap: bool) -> np.ndarray:
    """Gamma along the absorbing path, s = depth from the inner edge of the right layer."""
    if wrap:
        d = np.where(s <= width, s, 2.0 * width - s)
    else:
        d = s
    return strength * (np.clip(d, 0.0, width) / width) ** 2


def absorber_reflection_transmission(
    strength: float,
    width: float,
    mass: float,
    k: np.ndarray | float,
    *,
    wrap: bool = True,
    n_slabs: int | None = None,
) -> np.ndarray:
    """Probability R + T that a plane wave of wavenumber k survives the absorbing layer.

    Parameters
    ----------
    strength : float
        Gamma at the layer's outer edge [hartree].
    width : float
        Layer width [bohr].
    mass : float
        Particle mass [m_e].
    k : float or ndarray
        Incident wavenumbers [1/bohr], > 0.
    wrap : bool
        True (default): the periodic path right layer + left layer of the FFT cell (module Notes).
        False: one layer followed by free space.
    n_slabs : int, optional
        Number of piecewise-constant slabs along the path; default: the power of two >= 512 with
        max(k, |q|) h <= 0.1 (relative error of R + T below ~1e-3; second order in h).

    Returns
    -------
    ndarray, shape of ``k``
        R + T (probability, between 0 and 1).

    Notes
    -----
    Transfer matrices (module Notes); the incident amplitude a and reflected amplitude b at the inner edge
    follow from integrating psi = 1, psi' = ik backwards from the far edge: T = 1/|a|^2, R = |b/a|^2.
    """
    k_arr = np.atleast_1d(np.asarray(k, dtype=float))
    if np.any(k_arr <= 0):
        raise ValueError("wavenumbers must be > 0")
    path = (2.0 if wrap else 1.0) * width
    q_scale = max(float(k_arr.max()), float(np.sqrt(2.0 * mass * max(strength, 0.0))), 1e-12)
    if n_slabs is None:
        n_min = max(512, path * q_scale / 0.1)
        n_slabs = int(2 ** np.ceil(np.log2(n_min)))
    h = path / n_slabs
    s_mid = (np.arange(n_slabs) + 0.5) * h
    g = _path_profile(s_mid, width, strength, wrap)  # (n_slabs,)
    out = np.empty(k_arr.shape)
    _absorber_kernels.path_rt_nb(g, h, float(mass), k_arr, out)
    return out if np.ndim(k) else out[0]


def _max_rt(log_strength: float, width: float, mass: float, k: np.ndarray, wrap: bool) -> float:
    return float(
        np.max(absorber_reflection_transmission(np.exp(log_strength), width, mass, k, wrap=wrap))
    )


def default_absorber_strength(
    width: float, mass: float, k_lo: float, k_hi: float, *, n_k: int = 32, wrap: bool = True
) -> tuple[float, float]:
    """Strength minimising max over [k_lo, k_hi] of R + T (probability).

    Parameters
    ----------
    width : float
        Layer width [bohr].
    mass : float
        Particle mass [m_e].
    k_lo, k_hi : float
        Wavenumber range of the run [1/bohr], 0 < k_lo <= k_hi (`absorber_k_range`).
    n_k : int
        Wavenumbers sampled (geometrically spaced, end points included).

    Returns
    -------
    strength : float
        [hartree].
    max_rt : float
        Achieved max of R + T over the sampled range (probability); SPEC asks for < 1e-3.

    Notes
    -----
    R grows and T falls with the strength, so the max over k is unimodal in log(strength): a coarse scan
    over 10^-3 .. 10 times the range's kinetic-energy scale brackets the minimum, then a bounded Brent
    search refines it.
    """
    if not (k_lo > 0 and k_hi >= k_lo):
        raise ValueError(f"need 0 < k_lo <= k_hi, got {k_lo}, {k_hi}")
    k = np.geomspace(k_lo, k_hi, n_k) if k_hi > k_lo else np.array([k_lo])
    e_scale = k_hi**2 / (2.0 * mass)
    logs = np.log(e_scale) + np.linspace(np.log(1e-3), np.log(10.0), 13)
    vals = np.array([_max_rt(ls, width, mass, k, wrap) for ls in logs])
    i = int(np.argmin(vals))
    lo, hi = logs[max(i - 1, 0)], logs[min(i + 1, len(logs) - 1)]
    res = minimize_scalar(
        _max_rt,
        bounds=(lo, hi),
        args=(width, mass, k, wrap),
        method="bounded",
        options={"xatol": 1e-3},
    )
    best_log, best_val = (res.x, float(res.fun)) if res.fun < vals[i] else (logs[i], float(vals[i]))
    strength = float(np.exp(best_log))
    # (build_model logs the chosen layers, Model.absorber_report, in the run file's units)
    return strength, best_val


def absorber_k_range(
    width: float, k_hi: float, packets: list[tuple[float, float]] | None = None
) -> tuple[float, float]:
    """Wavenumber range [k_lo, k_hi] the absorbing layer must handle (module Notes).

    Parameters
    ----------
    width : float
        Absorber width [bohr].
    k_hi : float
        k_reach of the resolution rules [1/bohr].
    packets : list of (wavenumber, width)
        The run's Gaussian packets (k0 [1/bohr], density standard deviation [bohr]); empty or None
        when there are none.

    Returns
    -------
    (k_lo, k_hi) : tuple of float
        [1/bohr], k_floor <= k_lo <= k_hi with k_floor = 2 pi / width.
    """
    k_floor = 2.0 * np.pi / width
    if packets:
        k_lo = min(abs(k0) - 3.0 / (2.0 * w) for k0, w in packets)
    else:
        k_lo = k_floor
    k_lo = max(k_lo, k_floor)
    k_hi = max(k_hi, k_lo)
    return float(k_lo), float(k_hi)


def minimum_absorber_width(
    width: float,
    mass: float,
    k_hi: float,
    packets: list[tuple[float, float]] | None,
    units,
    *,
    max_factor: float = 8.0,
    tolerance: float = ABSORBER_TOLERANCE,
) -> float | None:
    """Narrowest layer width, as a number to write in the run file, that absorbs well (module Notes).

    Parameters
    ----------
    width : float
        The run's width [bohr]; the search starts above it.
    mass : float
        [m_e]
    k_hi : float
        k_reach of the resolution rules [1/bohr].
    packets : list of (wavenumber, width)
        As for `absorber_k_range` (atomic units).
    units : bohmpower.units.UnitSystem
        The run file's system: the width is rounded up (3 significant digits) in its length unit.
    max_factor : float
        Widths up to ``max_factor * width`` are tried.
    tolerance : float
        The largest R + T allowed (ABSORBER_TOLERANCE).

    Returns
    -------
    float or None
        The width in the run file's length unit (e.g. nm), with the automatic strength at that width
        keeping max R + T <= tolerance; None when no width up to ``max_factor * width`` does.
    """
    from bohmpower.units import format_number

    def max_rt(w: float, n_k: int = 32) -> float:
        k_lo, k_top = absorber_k_range(w, k_hi, packets)
        return default_absorber_strength(w, mass, k_lo, k_top, n_k=n_k)[1]

    bad, good = width, None
    w = width
    while w < max_factor * width:
        w = min(2.0 * w, max_factor * width)
        if max_rt(w, n_k=16) <= tolerance:
            good = w
            break
        bad = w
    if good is None:
        return None
    while good - bad > 0.03 * good:
        mid = 0.5 * (bad + good)
        if max_rt(mid, n_k=16) <= tolerance:
            good = mid
        else:
            bad = mid
    # The number the user writes, checked as build_model will judge it (n_k = 32); up a step if short.
    shown = float(format_number(units.from_atomic(good, "length"), 3, "up"))
    for _ in range(8):
        if max_rt(units.to_atomic(shown, "length")) <= tolerance:
            return shown
        shown = float(format_number(shown * 1.02, 3, "up"))
    return None
