"""Unit systems at the edges of the package: atomic units inside, device units (nm, eV, fs) outside.

Everything inside bohmpower is in atomic units (hbar = m_e = e = 4 pi eps0 = 1). A run file, a result
file and a plot may use the "device" system instead; this module converts between the two through a fixed
vocabulary of *dimensions* (``DIMENSIONS``) shared by config, io and plot.

Notes
-----
Device units: length in nm, energy in eV, time in fs. Masses are in electron masses in both systems
(an effective mass such as 0.067 for GaAs); relative permittivities, charges (in e), phases and
probabilities are dimensionless. Constants are CODATA 2018:

    bohr    = 0.0529177210903 nm
    hartree = 27.211386245988 eV
    a.u. of time = hbar / hartree = 0.024188843265857 fs

so that e^2/(4 pi eps0) = 1 hartree bohr = 1.43996454... eV nm and hbar = 1 hartree a.u.-time =
0.6582119569... eV fs. The electric field is the only dimension not built from (length, energy, time):
in device units it is given in V/nm, and since the electron's charge is q = -e, the force q E in eV/nm has
the same number as E in V/nm; in atomic units it is ``atomic_unit_of_electric_field`` = hartree/(e bohr).

Every unit string returned by :meth:`UnitSystem.unit` parses with pint, so result files are
self-describing.

Messages (refusals, hints, warnings, log lines, ``bohmpower check``) write every dimensioned number
through :meth:`UnitSystem.quantity`, which converts from atomic units and appends the unit as the run
file writes it ("0.746 fs", "40 nm", "0.0443 eV", "1/nm"). A hint that is a bound is rounded towards
the safe side (``rounding="down"`` for an upper bound, ``"up"`` for a lower bound), so the number it
shows, written into the run file, satisfies the rule it came from.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import TypeVar

import numpy as np

from bohmpower.errors import ConfigError

__all__ = [
    "ATOMIC",
    "AU_TIME_FS",
    "BOHR_NM",
    "BOLTZMANN_EV_PER_K",
    "BOLTZMANN_HARTREE_PER_K",
    "COULOMB_EV_NM",
    "DIMENSIONS",
    "HARTREE_EV",
    "SYSTEMS",
    "UnitSystem",
    "format_number",
]

#: CODATA 2018 Bohr radius in nm.
BOHR_NM = 0.0529177210903
#: CODATA 2018 Hartree energy in eV.
HARTREE_EV = 27.211386245988
#: CODATA 2018 atomic unit of time (hbar / hartree) in fs.
AU_TIME_FS = 0.024188843265857
#: e^2 / (4 pi eps0) = 1 hartree bohr, in eV nm (1.43996454...).
COULOMB_EV_NM = HARTREE_EV * BOHR_NM
#: Boltzmann constant k_B in eV per kelvin (CODATA 2018, exact) and in hartree per kelvin.
BOLTZMANN_EV_PER_K = 8.617333262e-5
BOLTZMANN_HARTREE_PER_K = BOLTZMANN_EV_PER_K / HARTREE_EV

SYSTEMS = ("atomic", "device")

# Each dimension as exponents of (length, energy, time), plus its unit string in each system. Masses are in
# electron masses in both systems, so "mass" has no exponents. The electric field is special-cased: its
# device unit V/nm is numerically the force eV/nm on a charge e, so it converts like energy/length.
_DIMENSIONS: dict[str, tuple[tuple[int, int, int], str, str]] = {
    #  name                (L, E, T)      atomic unit                        device unit
    "dimensionless": ((0, 0, 0), "dimensionless", "dimensionless"),
    "length": ((1, 0, 0), "bohr", "nm"),
    "energy": ((0, 1, 0), "hartree", "eV"),
    "time": ((0, 0, 1), "atomic_unit_of_time", "fs"),
    "mass": ((0, 0, 0), "electron_mass", "electron_mass"),
    "wavenumber": ((-1, 0, 0), "1/bohr", "1/nm"),
    "frequency": ((0, 0, -1), "1/atomic_unit_of_time", "1/fs"),
    "angular_frequency": ((0, 0, -1), "rad/atomic_unit_of_time", "rad/fs"),
    "velocity": ((1, 0, -1), "bohr/atomic_unit_of_time", "nm/fs"),
    "force": ((-1, 1, 0), "hartree/bohr", "eV/nm"),
    "electric_field": ((-1, 1, 0), "atomic_unit_of_electric_field", "V/nm"),
    "density": ((-1, 0, 0), "1/bohr", "1/nm"),
    "current": ((0, 0, -1), "1/atomic_unit_of_time", "1/fs"),
    "energy_density": ((-1, 1, 0), "hartree/bohr", "eV/nm"),
    "power": ((0, 1, -1), "hartree/atomic_unit_of_time", "eV/fs"),
    "power_density": ((-1, 1, -1), "hartree/bohr/atomic_unit_of_time", "eV/nm/fs"),
    "energy_current": ((0, 1, -1), "hartree/atomic_unit_of_time", "eV/fs"),
    "curvature": ((-2, 1, 0), "hartree/bohr**2", "eV/nm**2"),
    "probability": ((0, 0, 0), "dimensionless", "dimensionless"),
}

#: The fixed vocabulary of dimensions (used by config, io and plot).
DIMENSIONS: tuple[str, ...] = tuple(_DIMENSIONS)

T = TypeVar("T", float, np.ndarray)

_ROUNDING = {"nearest": ROUND_HALF_EVEN, "down": ROUND_FLOOR, "up": ROUND_CEILING}


def format_number(value: float, digits: int = 6, rounding: str = "nearest") -> str:
    """``value`` with ``digits`` significant digits, like ``f"{value:.{digits}g}"``.

    Parameters
    ----------
    value : float
    digits : int
        Significant digits (>= 1).
    rounding : {"nearest", "down", "up"}
        "down" never gives a number above ``value`` (for an upper bound such as the largest dt),
        "up" never one below it (for a lower bound such as the narrowest layer).

    Examples
    --------
    >>> format_number(0.74639, 3, "down"), format_number(0.74639, 3, "up")
    ('0.746', '0.747')
    """
    if rounding not in _ROUNDING:
        raise ValueError(f"rounding must be one of {', '.join(_ROUNDING)}, got {rounding!r}")
    value = float(value)
    if value == 0.0 or not np.isfinite(value):
        return f"{value:.{digits}g}"
    nearest = f"{value:.{digits}g}"
    if rounding == "nearest" or (rounding == "down") == (float(nearest) <= value):
        return nearest
    exact = Decimal(value)  # the binary value exactly, so "down" and "up" are true bounds
    quantum = Decimal(1).scaleb(exact.adjusted() - digits + 1)
    rounded = float(exact.quantize(quantum, rounding=_ROUNDING[rounding]))
    return f"{rounded:.{digits}g}"


class UnitSystem:
    """A unit system ("atomic" or "device") and its conversions to and from atomic units.

    Parameters
    ----------
    name : {"atomic", "device"}
        "atomic": bohr, hartree, atomic unit of time. "device": nm, eV, fs. Masses are in electron masses
        in both.

    Examples
    --------
    >>> UnitSystem("device").to_atomic(1.0, "length")   # 1 nm in bohr
    18.897261246257703
    """

    def __init__(self, name: str):
        if name not in SYSTEMS:
            raise ConfigError(
                "units.system", f"unknown unit system {name!r}; allowed: atomic, device"
            )
        self.name = name

    def __repr__(self) -> str:
        return f"UnitSystem({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnitSystem) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("UnitSystem", self.name))

    @staticmethod
    def _entry(dimension: str) -> tuple[tuple[int, int, int], str, str]:
        try:
            return _DIMENSIONS[dimension]
        except KeyError:
            raise ValueError(
                f"unknown dimension {dimension!r}; known: {', '.join(DIMENSIONS)}"
            ) from None

    def factor(self, dimension: str) -> float:
        """Atomic units per unit of this system for ``dimension`` (value_atomic = factor * value).

        Parameters
        ----------
        dimension : str
            One of ``DIMENSIONS``.

        Returns
        -------
        float
            1.0 in the atomic system.
        """
        (n_l, n_e, n_t), _, _ = self._entry(dimension)
        if self.name == "atomic":
            return 1.0
        # One device unit of each base quantity expressed in atomic units.
        return (1.0 / BOHR_NM) ** n_l * (1.0 / HARTREE_EV) ** n_e * (1.0 / AU_TIME_FS) ** n_t

    def to_atomic(self, value: T, dimension: str) -> T:
        """Convert ``value`` (float or array, in this system's unit of ``dimension``) to atomic units."""
        f = self.factor(dimension)
        if isinstance(value, np.ndarray):
            return value * f
        return float(value) * f

    def from_atomic(self, value: T, dimension: str) -> T:
        """Convert ``value`` (float or array, atomic units) to this system's unit of ``dimension``."""
        f = self.factor(dimension)
        if isinstance(value, np.ndarray):
            return value / f
        return float(value) / f

    def unit(self, dimension: str) -> str:
        """Unit string of ``dimension`` in this system; pint can parse it ("bohr", "eV/fs", "1/nm")."""
        _, atomic, device = self._entry(dimension)
        return atomic if self.name == "atomic" else device

    def quantity(
        self,
        value: float,
        dimension: str,
        *,
        digits: int = 6,
        rounding: str = "nearest",
        converted: bool = False,
    ) -> str:
        """``value`` written in this system with its unit, for messages: "0.746 fs", "40 nm".

        Parameters
        ----------
        value : float
            In atomic units (converted here), or already in this system when ``converted``.
        dimension : str
            One of ``DIMENSIONS``; dimensionless ones ("dimensionless", "probability", "mass") get
            no unit ("mass" is in electron masses in both systems).
        digits : int
            Significant digits.
        rounding : {"nearest", "down", "up"}
            See :func:`format_number`: "down" for an upper bound a user is to write, "up" for a lower
            bound.
        converted : bool
            True when ``value`` is already in this system (a value read from the run file).

        Examples
        --------
        >>> UnitSystem("device").quantity(30.8705, "time", digits=3, rounding="down")
        '0.746 fs'
        """
        shown = float(value) if converted else self.from_atomic(float(value), dimension)
        number = format_number(shown, digits, rounding)
        label = self.unit(dimension)
        if label in ("dimensionless", "electron_mass"):
            return number
        return f"{number} {label}"

    def interval(self, lo: float, hi: float, dimension: str, *, digits: int = 4) -> str:
        """``[lo, hi] unit`` from atomic-unit end points, e.g. "[0.1, 0.5] 1/nm"."""
        a = format_number(self.from_atomic(float(lo), dimension), digits)
        b = format_number(self.from_atomic(float(hi), dimension), digits)
        label = self.unit(dimension)
        return f"[{a}, {b}]" if label == "dimensionless" else f"[{a}, {b}] {label}"


#: The atomic system, for code that formats atomic-unit numbers without a run file's system.
ATOMIC = UnitSystem("atomic")
