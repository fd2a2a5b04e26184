"""The run file: one frozen dataclass tree per run, loaded from TOML and validated on the way in.

``load_config(path)`` reads a run file, ``parse_config(data, base_dir)`` validates a dict (as produced by
``tomllib``) and returns a :class:`RunConfig`. Field names are the TOML keys (docs/design.md). Values stay
in the run's own unit system (``[units] system``); :meth:`RunConfig.to_atomic` converts the whole tree once,
at the edge, for the numerics.

One registry of key specifications, :data:`KEYS`, drives everything that depends on the list of keys:
type checks, defaults, allowed ranges, unknown-key errors, unit conversion in ``to_atomic``, the TOML
emitter and the documentation (docs/run-file.md is tested against it both ways). Rules that tie several
keys together (x_min < x_max, packets inside the grid, one orbital per electron, ...) follow the registry
checks in :func:`parse_config`.

Every refusal is a :class:`bohmpower.errors.ConfigError` whose ``key`` is the dotted key to change:
``grid.points``, ``potential[1].height``, ``initial.packet[0].width`` (array entries count from 0 in file
order).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import re
import tomllib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bohmpower.errors import ConfigError
from bohmpower.units import UnitSystem

__all__ = [
    "KEYS",
    "SCHEMA",
    "SECTIONS",
    "Eigenstate",
    "EnergyConfig",
    "FieldPiece",
    "GridConfig",
    "InitialConfig",
    "InteractionConfig",
    "KeySpec",
    "MethodConfig",
    "NumericsConfig",
    "Packet",
    "Particles",
    "PotentialPiece",
    "ReservoirsConfig",
    "RunConfig",
    "SteadyStateConfig",
    "TimeConfig",
    "Train",
    "TrajectoriesConfig",
    "Units",
    "VolumeConfig",
    "describe",
    "load_config",
    "parse_config",
]

log = logging.getLogger(__name__)

SCHEMA = "bohmpower-run/1"

#: Most steps a run may take (t_end/dt); guards against absurd run files before anything is allocated.
MAX_STEPS = 10**9
#: Every float of a run file lies in [-FLOAT_LIMIT, FLOAT_LIMIT], and a nonzero one has magnitude at least
#: FLOAT_TINY: products and quotients of a few such numbers (k^2/2m, m omega^2 x^2, 1/width^2, exp of
#: their ratios' squares...) then stay far inside double precision, so no computation overflows or
#: underflows into inf, 0/0 or NaN. Values outside are refused with the limit in the message; the
#: resolution rules then judge what remains.
FLOAT_LIMIT = 1e30
FLOAT_TINY = 1e-30
#: ``[steady_state] warm_up = "auto"``: the open-system solver sets the warm-up to its estimate of the
#: time to steady state (``devices.engine.steady_state_time``).
AUTO_WARM_UP = "auto"
#: Largest grid.points (one conditional wavefunction of 2**24 complex points is 256 MiB).
MAX_GRID_POINTS = 2**24
#: Largest trajectories.count (sample ids and block lists are held in memory up front).
MAX_SAMPLES = 10**7
#: Relative tolerance of "t_end/dt is a whole number" (SPEC.md: to 1e-9).
STEP_TOLERANCE = 1e-9
#: A packet must fit inside the grid over center +/- PACKET_HALF_SPAN * width (its density is then below
#: exp(-4.5) ~ 1e-2 of its peak at the grid's end or the absorbing layer).
PACKET_HALF_SPAN = 3.0

_VOLUME_NAME = re.compile(r"[A-Za-z0-9_-]+")


# --------------------------------------------------------------------------------------------------------
# The registry of keys
# --------------------------------------------------------------------------------------------------------


class _Required:
    """Marker default of a key that must be given."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class KeySpec:
    """Specification of one run-file key.

    Attributes
    ----------
    section : str
        Registry section: "top" (keys outside any table), a table ("grid"), an array of tables
        ("volume", "initial.packet"), or a kind of a kinded table ("potential.barrier",
        "field.linear_drop", "field.time_profile.sine", "interaction.soft_coulomb").
    key : str
        The TOML key (and the dataclass field name, except ``energy`` of packets and trains, which is
        resolved to ``wavenumber`` at load time).
    type : {"float", "int", "str", "bool", "path"}
        ints are accepted for floats; bools are never numbers; floats must be finite.
    dimension : str or None
        One of ``bohmpower.units.DIMENSIONS`` for floats, None for other types.
    default : object
        ``REQUIRED``, None (optional; what None means is in ``default_text``) or the default value.
    allowed : str
        The allowed range, as text (used in error messages and in docs/run-file.md).
    check : callable or None
        ``check(value) -> bool`` for the single-key part of ``allowed``.
    choices : tuple of str or None
        Allowed values of a string key.
    default_text : str or None
        How the default reads in the docs when it is not a plain value.
    auto_comment : bool
        ``to_toml`` writes a comment line with ``default_text`` when the value is None (automatic).
    """

    section: str
    key: str
    type: str
    dimension: str | None
    default: Any
    allowed: str
    check: Callable[[Any], bool] | None = None
    choices: tuple[str, ...] | None = None
    default_text: str | None = None
    auto_comment: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def doc_default(self) -> str:
        """The default as docs/run-file.md writes it."""
        if self.default_text is not None:
            return self.default_text
        if self.required:
            return "required"
        return _doc_value(self.default)

    @property
    def doc_type(self) -> str:
        return {"str": "string"}.get(self.type, self.type)

    @property
    def doc_dimension(self) -> str:
        return self.dimension if self.dimension is not None else "-"


def _doc_value(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def _choices_text(choices: tuple[str, ...]) -> str:
    return ", ".join(f'"{c}"' for c in choices)


def _f(section, key, dimension, default, allowed, check=None, **kw) -> KeySpec:
    return KeySpec(section, key, "float", dimension, default, allowed, check, **kw)


def _i(section, key, default, allowed, check=None, **kw) -> KeySpec:
    return KeySpec(section, key, "int", None, default, allowed, check, **kw)


def _s(section, key, default, choices, **kw) -> KeySpec:
    return KeySpec(section, key, "str", None, default, _choices_text(choices), None, choices, **kw)


def _b(section, key, default) -> KeySpec:
    return KeySpec(section, key, "bool", None, default, "true, false")


def _positive(v) -> bool:
    return v > 0


def _nonneg(v) -> bool:
    return v >= 0


POTENTIAL_KINDS = (
    "barrier",
    "well",
    "double_barrier",
    "harmonic",
    "gaussian",
    "soft_coulomb_well",
    "table",
)
FIELD_KINDS = ("linear_drop", "uniform")
TIME_PROFILES = ("constant", "turn_on", "sine", "gaussian_pulse")
INTERACTION_KINDS = ("none", "soft_coulomb", "harmonic")
UNIT_SYSTEMS = ("atomic", "device")

_FINITE = "finite"
_POS = "> 0"
_NONNEG = ">= 0"

#: The registry: every key of the run file, in the order the resolved run file lists them.
# fmt: off  (one key per line reads as a table)
KEYS: tuple[KeySpec, ...] = (
    # -- keys outside any table
    _s("top", "schema", SCHEMA, (SCHEMA,)),
    KeySpec("top", "title", "str", None, "", "any text"),
    # -- [units]
    _s("units", "system", "atomic", UNIT_SYSTEMS),
    # -- [particles]
    _i("particles", "count", REQUIRED, ">= 1", lambda v: v >= 1),
    _f("particles", "mass", "mass", 1.0, _POS, _positive),
    _s("particles", "statistics", "fermion", ("fermion", "distinguishable")),
    # -- [grid]
    _f("grid", "x_min", "length", REQUIRED, "< x_max"),
    _f("grid", "x_max", "length", REQUIRED, "> x_min"),
    _i("grid", "points", REQUIRED, "even, >= 8, <= 2**24",
       lambda v: 8 <= v <= MAX_GRID_POINTS and v % 2 == 0),
    _s("grid", "boundary", "periodic", ("periodic", "absorbing")),
    _f(
        "grid",
        "absorber_width",
        "length",
        None,
        '0 < width < (x_max - x_min)/4; only with boundary = "absorbing"',
        default_text='required when boundary = "absorbing"',
    ),
    _f(
        "grid",
        "absorber_strength",
        "energy",
        None,
        '> 0; only with boundary = "absorbing"',
        _positive,
        default_text="automatic",
        auto_comment=True,
    ),
    # -- [time]
    _f("time", "dt", "time", REQUIRED, _POS, _positive),
    _f(
        "time", "t_end", "time", REQUIRED, "> 0; t_end/dt a whole number (relative 1e-9)", _positive
    ),
    _i("time", "save_every", 10, ">= 1", lambda v: v >= 1),
    _f(
        "time",
        "window",
        "time",
        None,
        "> 0; a whole number of dt; <= t_end",
        _positive,
        default_text="save_every*dt",
        auto_comment=True,
    ),
    # -- [[potential]]
    _s("potential", "kind", REQUIRED, POTENTIAL_KINDS),
    _f("potential.barrier", "center", "length", REQUIRED, _FINITE),
    _f("potential.barrier", "width", "length", REQUIRED, _POS, _positive),
    _f("potential.barrier", "height", "energy", REQUIRED, _FINITE),
    _f("potential.barrier", "smoothing", "length", 0.0, _NONNEG, _nonneg),
    _f("potential.well", "center", "length", REQUIRED, _FINITE),
    _f("potential.well", "width", "length", REQUIRED, _POS, _positive),
    _f("potential.well", "depth", "energy", REQUIRED, _FINITE),
    _f("potential.well", "smoothing", "length", 0.0, _NONNEG, _nonneg),
    _f("potential.double_barrier", "center", "length", REQUIRED, _FINITE),
    _f("potential.double_barrier", "width", "length", REQUIRED, _POS, _positive),
    _f("potential.double_barrier", "height", "energy", REQUIRED, _FINITE),
    _f("potential.double_barrier", "gap", "length", REQUIRED, _POS, _positive),
    _f("potential.double_barrier", "smoothing", "length", 0.0, _NONNEG, _nonneg),
    _f("potential.harmonic", "center", "length", 0.0, _FINITE),
    _f("potential.harmonic", "omega", "angular_frequency", REQUIRED, _POS, _positive),
    _f("potential.gaussian", "center", "length", REQUIRED, _FINITE),
    _f("potential.gaussian", "width", "length", REQUIRED, _POS, _positive),
    _f("potential.gaussian", "height", "energy", REQUIRED, _FINITE),
    _f("potential.soft_coulomb_well", "center", "length", 0.0, _FINITE),
    _f("potential.soft_coulomb_well", "charge", "dimensionless", 1.0, _FINITE),
    _f("potential.soft_coulomb_well", "softening", "length", 1.0, _POS, _positive),
    KeySpec(
        "potential.table",
        "file",
        "path",
        None,
        REQUIRED,
        "an existing two-column text file (x, U), x increasing; relative to the run file's folder",
    ),
    _s("potential.table", "table_units", None, UNIT_SYSTEMS, default_text="units.system"),
    # -- [[field]]
    _s("field", "kind", REQUIRED, FIELD_KINDS),
    _s("field", "time_profile", "constant", TIME_PROFILES),
    _f("field.linear_drop", "bias", "energy", REQUIRED, _FINITE),
    _f("field.linear_drop", "x_left", "length", REQUIRED, "grid.x_min <= x_left < x_right"),
    _f("field.linear_drop", "x_right", "length", REQUIRED, "x_left < x_right <= grid.x_max"),
    _f(
        "field.linear_drop",
        "smoothing",
        "length",
        None,
        _POS,
        _positive,
        default_text="(x_right - x_left)/20",
    ),
    _f("field.uniform", "force", "force", REQUIRED, "finite; not on periodic grids"),
    _f("field.uniform", "origin", "length", 0.0, _FINITE),
    _f("field.time_profile.turn_on", "t_on", "time", REQUIRED, _POS, _positive),
    _f("field.time_profile.sine", "frequency", "frequency", REQUIRED, _POS, _positive),
    _f("field.time_profile.sine", "phase", "dimensionless", 0.0, "finite (rad)"),
    _f("field.time_profile.gaussian_pulse", "t0", "time", REQUIRED, _FINITE),
    _f("field.time_profile.gaussian_pulse", "duration", "time", REQUIRED, _POS, _positive),
    # -- [interaction]
    _s("interaction", "kind", "none", INTERACTION_KINDS),
    _f("interaction.soft_coulomb", "softening", "length", 1.0, _POS, _positive),
    _f("interaction.soft_coulomb", "relative_permittivity", "dimensionless", 1.0, _POS, _positive),
    _f("interaction.harmonic", "strength", "curvature", REQUIRED, _FINITE),
    # -- [initial]
    _i("initial", "many_body_state", None, ">= 0; no orbitals with it", _nonneg),
    _f(
        "initial.packet",
        "center",
        "length",
        REQUIRED,
        "center +/- 3 width inside the grid (and outside absorbing layers)",
    ),
    _f("initial.packet", "width", "length", REQUIRED, _POS, _positive),
    _f(
        "initial.packet",
        "wavenumber",
        "wavenumber",
        None,
        "finite; not with energy",
        default_text="required unless energy",
    ),
    _f(
        "initial.packet",
        "energy",
        "energy",
        None,
        ">= 0; not with wavenumber",
        _nonneg,
        default_text="required unless wavenumber",
    ),
    _i("initial.train", "count", REQUIRED, ">= 1", lambda v: v >= 1),
    _f(
        "initial.train",
        "first_center",
        "length",
        REQUIRED,
        "every member +/- 3 width inside the grid (and outside absorbing layers)",
    ),
    _f("initial.train", "spacing", "length", REQUIRED, _FINITE),
    _f("initial.train", "width", "length", REQUIRED, _POS, _positive),
    _f(
        "initial.train",
        "wavenumber",
        "wavenumber",
        None,
        "finite; not with energy",
        default_text="required unless energy",
    ),
    _f(
        "initial.train",
        "energy",
        "energy",
        None,
        ">= 0; not with wavenumber",
        _nonneg,
        default_text="required unless wavenumber",
    ),
    _i("initial.eigenstate", "index", REQUIRED, ">= 0", _nonneg),
    # -- [[volume]]
    KeySpec("volume", "name", "str", None, REQUIRED, "[A-Za-z0-9_-]+, unique"),
    _f("volume", "x_min", "length", REQUIRED, "grid.x_min <= x_min < x_max"),
    _f("volume", "x_max", "length", REQUIRED, "x_min < x_max <= grid.x_max"),
    _f("volume", "smoothing", "length", 0.0, _NONNEG, _nonneg),
    # -- [trajectories]
    _i("trajectories", "count", REQUIRED, ">= 1, <= 10**7", lambda v: 1 <= v <= MAX_SAMPLES),
    _i("trajectories", "seed", 12345, ">= 0", _nonneg),
    _i(
        "trajectories", "store", None, "0 <= store <= count", _nonneg, default_text="min(count, 10)"
    ),
    # -- [method]
    _s("method", "scheme", "zeroth_order", ("zeroth_order", "interacting")),
    _b("method", "exchange", False),
    _i("method", "basis_size", None, "1 <= value <= 4096 (interacting scheme)",
       lambda v: 1 <= v <= 4096, default_text="512 for N <= 2, 256 for N >= 3"),
    _f("method", "overlap_cutoff", "dimensionless", 1e-10,
       "1e-16 <= value < 1 (relative eigenvalue of S kept; interacting scheme)",
       lambda v: 1e-16 <= v < 1),
    _f("method", "norm_tolerance", "dimensionless", 0.05,
       "0 < value <= 1 (relative drift of the norm of Psi; interacting scheme)",
       lambda v: 0 < v <= 1),
    _f("method", "energy_tolerance", "dimensionless", 0.05,
       "0 < value <= 1 (relative drift of the energy of Psi where it is conserved; interacting "
       "scheme)", lambda v: 0 < v <= 1),
    # -- [reservoirs] (an open-system run: docs/devices.md)
    _f("reservoirs", "fermi_energy", "energy", REQUIRED, "> 0", _positive),
    _f("reservoirs", "temperature", "dimensionless", REQUIRED,
       ">= 0 (kelvin, in both unit systems)", lambda v: 0 <= v <= 1e5),
    _i("reservoirs", "degeneracy", 1, "1 or 2", lambda v: v in (1, 2)),
    _f("reservoirs", "packet_width", "length", REQUIRED, "> 0; the packets resolved by the grid",
       _positive),
    _f("reservoirs", "energy_min", "energy", 0.0, ">= 0; < energy_max", _nonneg),
    _f("reservoirs", "energy_max", "energy", None, "> energy_min", _positive,
       default_text="fermi_energy + 10 k_B temperature"),
    _i("reservoirs", "energy_cells", 64, "1 <= value <= 10**5", lambda v: 1 <= v <= 10**5),
    _f("reservoirs", "x_left", "length", None,
       "packet +/- 3 packet_width outside the absorbing layers; < x_right",
       default_text="left layer's inner edge + 3 packet_width"),
    _f("reservoirs", "x_right", "length", None,
       "packet +/- 3 packet_width outside the absorbing layers; > x_left",
       default_text="right layer's inner edge - 3 packet_width"),
    # -- [steady_state]
    _f("steady_state", "warm_up", "time", None,
       '>= 0; < time.t_end; or "auto" (the estimated time to steady state)', _nonneg,
       default_text="time.t_end/2"),
    _i("steady_state", "batches", 5, "2 <= value <= 1000", lambda v: 2 <= v <= 1000),
    # -- [energy]
    _b("energy", "include_drive_potential", False),
    # -- [numerics]
    _f(
        "numerics",
        "resolution_fraction",
        "dimensionless",
        0.8,
        "0 < value <= 1",
        lambda v: 0 < v <= 1,
    ),
    _f("numerics", "max_phase", "dimensionless", 1.0, "> 0 (rad)", _positive),
    _f("numerics", "warn_phase", "dimensionless", math.pi, "> 0 (rad)", _positive),
    _i("numerics", "order", 2, "2, 4 or 6", lambda v: v in (2, 4, 6)),
    _i("numerics", "fft_workers", 1, ">= 1", lambda v: v >= 1),
    _s("numerics", "fft_backend", "auto", ("auto", "scipy", "pyfftw")),
    _s("numerics", "window_quadrature", "newton_cotes", ("newton_cotes", "every_step")),
    _f("numerics", "window_node_phase", "dimensionless", 0.6, "> 0 (rad)", _positive),
    _f("numerics", "edge_node_phase", "dimensionless", 0.4, "> 0 (rad)", _positive),
    _i("numerics", "edge_refinement", None, "1 <= value <= 64", lambda v: 1 <= v <= 64,
       default_text="32 for 2 electrons, 4 for 3", auto_comment=True),
    _f(
        "numerics",
        "max_memory_gb",
        "dimensionless",
        None,
        "> 0 (gigabytes)",
        _positive,
        default_text="half the machine's memory",
        auto_comment=True,
    ),
    _f(
        "numerics",
        "density_cutoff",
        "dimensionless",
        1e-13,
        "0 <= value < 1 (relative to max density)",
        lambda v: 0 <= v < 1,
    ),
)
# fmt: on

#: Registry sections in order, each with its keys.
SECTIONS: dict[str, tuple[KeySpec, ...]] = {}
for _spec in KEYS:
    SECTIONS[_spec.section] = SECTIONS.get(_spec.section, ()) + (_spec,)
_SPEC: dict[tuple[str, str], KeySpec] = {(s.section, s.key): s for s in KEYS}
assert len(_SPEC) == len(KEYS), "duplicate key in the registry"

# Tables of the run file (top-level) and how they appear: "table" ([x]), "array" ([[x]]).
_TOP_TABLES: dict[str, str] = {
    "units": "table",
    "particles": "table",
    "grid": "table",
    "time": "table",
    "potential": "array",
    "field": "array",
    "interaction": "table",
    "initial": "table",
    "volume": "array",
    "trajectories": "table",
    "method": "table",
    "reservoirs": "table",
    "steady_state": "table",
    "energy": "table",
    "numerics": "table",
}
_REQUIRED_TABLES = ("particles", "grid", "time")
_INITIAL_TABLES: dict[str, str] = {"packet": "array", "train": "table", "eigenstate": "array"}


def _d(section: str, key: str) -> Any:
    """The registry default of a key (dataclass defaults come from here, never from a second list)."""
    default = _SPEC[(section, key)].default
    if default is REQUIRED:
        raise AssertionError(f"{section}.{key} has no default")
    return default


def _specs(*sections: str) -> tuple[KeySpec, ...]:
    out: tuple[KeySpec, ...] = ()
    for s in sections:
        out += SECTIONS.get(s, ())
    return out


# --------------------------------------------------------------------------------------------------------
# The dataclass tree
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Units:
    """``[units]``: the unit system of every dimensioned value of the run file."""

    system: str = _d("units", "system")

    def _sections(self) -> tuple[str, ...]:
        return ("units",)


@dataclass(frozen=True)
class Particles:
    """``[particles]``: number of electrons, mass (electron masses), statistics."""

    count: int
    mass: float = _d("particles", "mass")
    statistics: str = _d("particles", "statistics")

    def _sections(self) -> tuple[str, ...]:
        return ("particles",)


@dataclass(frozen=True)
class GridConfig:
    """``[grid]``: x_i = x_min + i (x_max - x_min)/points, i = 0 .. points-1 [length].

    ``absorber_strength`` None means automatic (chosen by the model layer).
    """

    x_min: float
    x_max: float
    points: int
    boundary: str = _d("grid", "boundary")
    absorber_width: float | None = None
    absorber_strength: float | None = _d("grid", "absorber_strength")

    def _sections(self) -> tuple[str, ...]:
        return ("grid",)

    @property
    def length(self) -> float:
        """Cell length x_max - x_min [length]."""
        return self.x_max - self.x_min

    @property
    def dx(self) -> float:
        """Grid spacing [length]."""
        return (self.x_max - self.x_min) / self.points


@dataclass(frozen=True)
class TimeConfig:
    """``[time]``: step, end time, frame cadence and power-average window [time].

    ``window`` None means ``save_every * dt`` (see :attr:`window_length`).
    """

    dt: float
    t_end: float
    save_every: int = _d("time", "save_every")
    window: float | None = _d("time", "window")

    def _sections(self) -> tuple[str, ...]:
        return ("time",)

    @property
    def n_steps(self) -> int:
        """Number of steps, round(t_end/dt) (validated to be a whole number at load time)."""
        return round(self.t_end / self.dt)

    @property
    def frame_steps(self) -> tuple[int, ...]:
        """Step indices of the stored frames: 0, save_every, 2 save_every, ..., and n_steps last."""
        n = self.n_steps
        return tuple(range(0, n, self.save_every)) + (n,)

    @property
    def n_frames(self) -> int:
        """Number of stored frames (len(frame_steps))."""
        n = self.n_steps
        return -(-n // self.save_every) + 1

    @property
    def window_length(self) -> float:
        """The power-average window: ``window`` or, when None, ``save_every * dt`` [time]."""
        return self.window if self.window is not None else self.save_every * self.dt


@dataclass(frozen=True)
class PotentialPiece:
    """One ``[[potential]]`` piece of the static potential U0; parameters of other kinds are None.

    ``file`` (kind "table") is resolved against the run file's folder; ``table_units`` is the unit
    system the table's two columns (x, U) are written in: the run's ``units.system`` unless given. It is
    kept by :meth:`RunConfig.to_atomic`, so the model converts the file itself.
    """

    kind: str
    center: float | None = None
    width: float | None = None
    height: float | None = None
    depth: float | None = None
    gap: float | None = None
    smoothing: float | None = None
    omega: float | None = None
    charge: float | None = None
    softening: float | None = None
    file: Path | None = None
    table_units: str | None = None

    def _sections(self) -> tuple[str, ...]:
        return ("potential", f"potential.{self.kind}")


@dataclass(frozen=True)
class FieldPiece:
    """One ``[[field]]`` drive: q*phi_i(x, t) = f_i(t) g_i(x); parameters of other kinds are None."""

    kind: str
    bias: float | None = None
    x_left: float | None = None
    x_right: float | None = None
    smoothing: float | None = None
    force: float | None = None
    origin: float | None = None
    time_profile: str = _d("field", "time_profile")
    t_on: float | None = None
    frequency: float | None = None
    phase: float | None = None
    t0: float | None = None
    duration: float | None = None

    def _sections(self) -> tuple[str, ...]:
        return ("field", f"field.{self.kind}", f"field.time_profile.{self.time_profile}")


@dataclass(frozen=True)
class InteractionConfig:
    """``[interaction]``: W(r); kind "none" when the section is absent."""

    kind: str = _d("interaction", "kind")
    softening: float | None = None
    relative_permittivity: float | None = None
    strength: float | None = None

    def _sections(self) -> tuple[str, ...]:
        return ("interaction", f"interaction.{self.kind}")


@dataclass(frozen=True)
class Packet:
    """``[[initial.packet]]``: a Gaussian orbital; ``energy`` in the file is resolved to ``wavenumber``."""

    center: float
    width: float
    wavenumber: float

    def _sections(self) -> tuple[str, ...]:
        return ("initial.packet",)


@dataclass(frozen=True)
class Train:
    """``[initial.train]``: ``count`` packets at first_center + i*spacing, i = 0 .. count-1."""

    count: int
    first_center: float
    spacing: float
    width: float
    wavenumber: float

    def _sections(self) -> tuple[str, ...]:
        return ("initial.train",)

    @property
    def centers(self) -> tuple[float, ...]:
        """Centres of the members, in order [length]."""
        return tuple(self.first_center + i * self.spacing for i in range(self.count))

    def packets(self) -> tuple[Packet, ...]:
        """The members as packets, in order."""
        return tuple(Packet(c, self.width, self.wavenumber) for c in self.centers)


@dataclass(frozen=True)
class Eigenstate:
    """``[[initial.eigenstate]]``: the index-th bound eigenstate of U0 as an orbital (0 = lowest)."""

    index: int

    def _sections(self) -> tuple[str, ...]:
        return ("initial.eigenstate",)


@dataclass(frozen=True)
class InitialConfig:
    """``[initial]``: orbitals (packets, then train members, then eigenstates) or a many-body state."""

    packet: tuple[Packet, ...] = ()
    train: Train | None = None
    eigenstate: tuple[Eigenstate, ...] = ()
    many_body_state: int | None = _d("initial", "many_body_state")

    def _sections(self) -> tuple[str, ...]:
        return ("initial",)

    @property
    def n_orbitals(self) -> int:
        """Packets + train members + eigenstates."""
        return len(self.packet) + (self.train.count if self.train else 0) + len(self.eigenstate)


@dataclass(frozen=True)
class VolumeConfig:
    """``[[volume]]``: Omega = [x_min, x_max] with tanh edges of width ``smoothing`` (0 = sharp)."""

    name: str
    x_min: float
    x_max: float
    smoothing: float = _d("volume", "smoothing")

    def _sections(self) -> tuple[str, ...]:
        return ("volume",)


@dataclass(frozen=True)
class TrajectoriesConfig:
    """``[trajectories]``: Monte Carlo samples, seed, and how many full trajectories to store."""

    count: int
    seed: int = _d("trajectories", "seed")
    store: int | None = _d("trajectories", "store")

    def __post_init__(self):
        if self.store is None:  # registry default: min(count, 10)
            object.__setattr__(self, "store", min(self.count, 10))

    def _sections(self) -> tuple[str, ...]:
        return ("trajectories",)


def default_basis_size(n_particles: int) -> int:
    """``method.basis_size`` when the run file leaves it out: the smallest measured basis with which
    the strong collisions of docs/accuracy.md reach 4 standard errors in every term (P_C is the
    slowest: 512 for N = 2; 256 for N = 3, taken for larger N too, where no exact reference exists)."""
    return 512 if n_particles <= 2 else 256


@dataclass(frozen=True)
class MethodConfig:
    """``[method]`` (``run`` only): the conditional-wavefunction scheme and its parameters.

    ``scheme = "zeroth_order"``: each world's CWs in their Hermitian conditional potentials; ``exchange``
    selects the N^2 orbital-set scheme (fermions). ``scheme = "interacting"``: the CWs of
    ``basis_size`` basis worlds form a basis for Psi (``cw.interacting``); with fermions the basis is
    antisymmetrised, which needs ``exchange = true``.
    """

    exchange: bool = _d("method", "exchange")
    scheme: str = _d("method", "scheme")
    basis_size: int | None = _d("method", "basis_size")
    overlap_cutoff: float = _d("method", "overlap_cutoff")
    norm_tolerance: float = _d("method", "norm_tolerance")
    energy_tolerance: float = _d("method", "energy_tolerance")

    def _sections(self) -> tuple[str, ...]:
        return ("method",)


@dataclass(frozen=True)
class ReservoirsConfig:
    """``[reservoirs]``: Fermi reservoirs at both ends; the run is an open system (docs/devices.md).

    Cells cover (energy_min, energy_max] above each lead's band bottom. Defaults are resolved at load
    time: ``energy_max`` = fermi_energy + 10 k_B temperature, ``x_left``
    and ``x_right`` 3 packet widths inside the absorbing layers. ``temperature`` is in kelvin.
    """

    fermi_energy: float
    temperature: float
    packet_width: float
    degeneracy: int = _d("reservoirs", "degeneracy")
    energy_min: float = _d("reservoirs", "energy_min")
    energy_max: float | None = _d("reservoirs", "energy_max")
    energy_cells: int = _d("reservoirs", "energy_cells")
    x_left: float | None = _d("reservoirs", "x_left")
    x_right: float | None = _d("reservoirs", "x_right")

    def _sections(self) -> tuple[str, ...]:
        return ("reservoirs",)


@dataclass(frozen=True)
class SteadyStateConfig:
    """``[steady_state]``: time averages over [warm_up, t_end] in ``batches`` batch means."""

    warm_up: float | str | None = _d("steady_state", "warm_up")  # or AUTO_WARM_UP
    batches: int = _d("steady_state", "batches")

    def _sections(self) -> tuple[str, ...]:
        return ("steady_state",)


@dataclass(frozen=True)
class EnergyConfig:
    """``[energy]``: chi of THEORY.md (include q*phi in the local energy)."""

    include_drive_potential: bool = _d("energy", "include_drive_potential")

    def _sections(self) -> tuple[str, ...]:
        return ("energy",)


@dataclass(frozen=True)
class NumericsConfig:
    """``[numerics]``: resolution thresholds, propagator order, threads, memory cap, density cutoff."""

    resolution_fraction: float = _d("numerics", "resolution_fraction")
    max_phase: float = _d("numerics", "max_phase")
    warn_phase: float = _d("numerics", "warn_phase")
    order: int = _d("numerics", "order")
    fft_workers: int = _d("numerics", "fft_workers")
    max_memory_gb: float | None = _d("numerics", "max_memory_gb")
    density_cutoff: float = _d("numerics", "density_cutoff")
    fft_backend: str = _d("numerics", "fft_backend")
    window_quadrature: str = _d("numerics", "window_quadrature")
    window_node_phase: float = _d("numerics", "window_node_phase")
    edge_node_phase: float = _d("numerics", "edge_node_phase")
    edge_refinement: int | None = _d("numerics", "edge_refinement")

    def _sections(self) -> tuple[str, ...]:
        return ("numerics",)


@dataclass(frozen=True)
class RunConfig:
    """A resolved run: every default filled, values in the unit system ``units.system``.

    Build it with :func:`load_config` or :func:`parse_config`, which validate; a tree built by hand can be
    validated with :meth:`validated`.
    """

    schema: str
    title: str
    units: Units
    particles: Particles
    grid: GridConfig
    time: TimeConfig
    potential: tuple[PotentialPiece, ...]
    field: tuple[FieldPiece, ...]
    interaction: InteractionConfig
    initial: InitialConfig
    volume: tuple[VolumeConfig, ...]
    trajectories: TrajectoriesConfig | None
    method: MethodConfig | None
    energy: EnergyConfig
    numerics: NumericsConfig
    reservoirs: ReservoirsConfig | None = None
    steady_state: SteadyStateConfig | None = None
    base_dir: Path = field(default_factory=Path.cwd)

    # ---- conversions -------------------------------------------------------------------------------

    @property
    def unit_system(self) -> UnitSystem:
        return UnitSystem(self.units.system)

    @property
    def open_system(self) -> bool:
        """True when ``[reservoirs]`` makes this an open-system run (bohmpower.devices)."""
        return self.reservoirs is not None

    def to_atomic(self) -> RunConfig:
        """The same tree with every dimensioned value in atomic units and ``units.system = "atomic"``.

        Table pieces keep ``table_units`` (the file is converted by the model).
        """
        us = self.unit_system
        if us.name == "atomic":
            return self

        def conv(obj):
            if obj is None:
                return None
            specs = {s.key: s for s in _specs(*obj._sections())}
            changes = {}
            for f in dataclasses.fields(obj):
                spec = specs.get(f.name)
                value = getattr(obj, f.name)
                if spec is None or spec.type != "float" or value is None or isinstance(value, str):
                    continue  # (a float key that holds "auto" is resolved later)
                changes[f.name] = us.to_atomic(value, spec.dimension)
            return dataclasses.replace(obj, **changes)

        init = self.initial
        return dataclasses.replace(
            self,
            units=Units("atomic"),
            particles=conv(self.particles),
            grid=conv(self.grid),
            time=conv(self.time),
            potential=tuple(conv(p) for p in self.potential),
            field=tuple(conv(p) for p in self.field),
            interaction=conv(self.interaction),
            initial=dataclasses.replace(
                init, packet=tuple(conv(p) for p in init.packet), train=conv(init.train)
            ),
            volume=tuple(conv(v) for v in self.volume),
            numerics=conv(self.numerics),
            reservoirs=conv(self.reservoirs),
            steady_state=conv(self.steady_state),
        )

    def to_toml(self) -> str:
        """The resolved run file (every default filled, in the run's own units) as TOML text.

        ``parse_config(tomllib.loads(c.to_toml()), c.base_dir) == c``. Automatic values (None) are
        written as comments.
        """
        out: list[str] = []
        b = self.base_dir
        _emit_keys(out, self, ("top",), b)
        scalar_tables = [
            ("units", self.units),
            ("particles", self.particles),
            ("grid", self.grid),
            ("time", self.time),
        ]
        for name, obj in scalar_tables:
            _emit_table(out, name, obj, b)
        for piece in self.potential:
            _emit_table(out, "potential", piece, b, array=True)
        for piece in self.field:
            _emit_table(out, "field", piece, b, array=True)
        _emit_table(out, "interaction", self.interaction, b)
        if self.initial.many_body_state is not None:
            _emit_table(out, "initial", self.initial, b)
        for p in self.initial.packet:
            _emit_table(out, "initial.packet", p, b, array=True)
        if self.initial.train is not None:
            _emit_table(out, "initial.train", self.initial.train, b)
        for e in self.initial.eigenstate:
            _emit_table(out, "initial.eigenstate", e, b, array=True)
        for v in self.volume:
            _emit_table(out, "volume", v, b, array=True)
        if self.trajectories is not None:
            _emit_table(out, "trajectories", self.trajectories, b)
        if self.method is not None:
            _emit_table(out, "method", self.method, b)
        if self.reservoirs is not None:
            _emit_table(out, "reservoirs", self.reservoirs, b)
        if self.steady_state is not None:
            _emit_table(out, "steady_state", self.steady_state, b)
        _emit_table(out, "energy", self.energy, b)
        _emit_table(out, "numerics", self.numerics, b)
        return "\n".join(out) + "\n"

    def config_hash(self) -> str:
        """sha256 (hex) of :meth:`to_toml`: identifies the resolved run."""
        return hashlib.sha256(self.to_toml().encode("utf-8")).hexdigest()

    # ---- checks and overrides ---------------------------------------------------------------------

    def check_command(self, command: str) -> None:
        """Refuse what the command cannot run.

        Parameters
        ----------
        command : {"exact", "run"}

        Raises
        ------
        ConfigError
            ``many_body_state`` or a missing ``[trajectories]`` in a ``run``; ``exchange = true``
            with distinguishable electrons. ``[method]`` in an exact run is not refused: one run
            file serves both engines, and the exact solver ignores it (``command_notes`` says so).
        """
        if command not in ("exact", "run"):
            raise ValueError(f"unknown command {command!r}; expected 'exact' or 'run'")
        if command == "exact" and self.reservoirs is not None:
            raise ConfigError("reservoirs", "an open-system run ([reservoirs]) is a `bohmpower run`; "
                              "the exact solver holds a fixed number of electrons")
        if command == "run":
            if self.initial.many_body_state is not None:
                raise ConfigError(
                    "initial.many_body_state",
                    "`bohmpower run` starts from orbitals; give [[initial.packet]], [initial.train] "
                    "or [[initial.eigenstate]] instead (many_body_state is for exact runs)",
                )
            if self.trajectories is None:
                raise ConfigError(
                    "trajectories", "`bohmpower run` needs [trajectories] count (or --samples)"
                )
        if (
            self.method is not None
            and self.method.exchange
            and self.particles.statistics != "fermion"
        ):
            raise ConfigError(
                "method.exchange",
                'exchange = true needs particles.statistics = "fermion" '
                "(distinguishable electrons have no exchange)",
            )

    def command_notes(self, command: str) -> list[str]:
        """What ``command`` ("exact" or "run") leaves out of this run file, one sentence each."""
        if command == "exact" and self.method is not None:
            return ["[method] is read by `bohmpower run` only; the exact solver ignores it"]
        return []

    def method_warnings(self) -> list[str]:
        """Warnings about the ``[method]`` chosen for this physics (``check`` and ``run`` print them)."""
        m = self.method
        interacting = self.interaction.kind != "none" and self.particles.count > 1
        if m is not None and m.scheme == "zeroth_order" and m.exchange and interacting:
            q = self.unit_system.quantity  # the measurement below was made in atomic units
            return [
                "method.exchange = true selects the N^2 orbital-set exchange scheme, which is worse "
                "than no exchange once electrons interact. Measured against the exact solver "
                "(docs/accuracy.md, \"Exchange at zeroth order\", 512 worlds): it creates whole-space "
                "energy that exact dynamics conserves (two-electron collision: "
                f"+{q(0.08, 'energy', digits=2)} at weak and +{q(1.9, 'energy', digits=2)} at strong "
                "interaction, where 79-83 % of the worlds are ejected into the absorbers; "
                f"exchange = false: below {q(0.011, 'energy', digits=2)}), and in no interacting case "
                "is E_Omega closer to exact than with exchange = false (strong collision: 68-115 "
                "standard errors against 8). Use exchange = false (exchange through the initial "
                "cofactor slice, the default) or scheme = \"interacting\"."
            ]
        return []

    def validated(self) -> RunConfig:
        """Validate a tree built or changed by hand; returns the resolved equivalent or raises."""
        return parse_config(tomllib.loads(self.to_toml()), self.base_dir)

    def replace_section(self, name: str, **changes: Any) -> RunConfig:
        """A validated copy with ``changes`` applied to section ``name`` (e.g. "trajectories").

        A missing optional section (``trajectories``, ``method``) is created from the changes and its
        defaults.
        """
        current = getattr(self, name)
        if current is None:
            cls = {"trajectories": TrajectoriesConfig, "method": MethodConfig}[name]
            new = cls(**changes)
        else:
            new = dataclasses.replace(current, **changes)
        return dataclasses.replace(self, **{name: new}).validated()

    def with_overrides(self, samples: int | None = None, seed: int | None = None) -> RunConfig:
        """Apply ``--samples`` (trajectories.count) and ``--seed``; ``store`` is capped at the count."""
        if samples is None and seed is None:
            return self
        changes: dict[str, Any] = {}
        if samples is not None:
            changes["count"] = samples
            store = self.trajectories.store if self.trajectories else 10
            changes["store"] = max(0, min(store, samples))
        if seed is not None:
            changes["seed"] = seed
        try:
            return self.replace_section("trajectories", **changes)
        except ConfigError as e:
            # Name the option that carried the bad value: --seed for the seed, --samples else.
            if e.key == "trajectories.seed":
                raise ConfigError("--seed", e.message) from None
            if e.key.startswith("trajectories."):
                raise ConfigError("--samples" if samples is not None else "--seed",
                                  e.message) from None
            raise


# --------------------------------------------------------------------------------------------------------
# TOML emitter (values are scalars: str, bool, int, finite float, Path)
# --------------------------------------------------------------------------------------------------------


def _toml_string(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"cannot write non-finite float {v!r} to a run file")
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    raise TypeError(f"cannot write {type(v).__name__} to a run file")


def _emit_keys(out: list[str], obj: Any, sections: tuple[str, ...], base_dir: Path | None = None):
    for spec in _specs(*sections):
        if not hasattr(obj, spec.key):
            continue  # `energy` of packets and trains: resolved to wavenumber
        value = getattr(obj, spec.key)
        if value is None:
            if spec.auto_comment:
                out.append(f"# {spec.key}: {spec.default_text}")
            continue
        if isinstance(value, Path):
            value = _path_text(value, base_dir)
        out.append(f"{spec.key} = {_toml_value(value)}")


def _path_text(path: Path, base_dir: Path | None) -> str:
    if base_dir is not None and path.is_relative_to(base_dir):
        return path.relative_to(base_dir).as_posix()
    return str(path)


def _emit_table(out: list[str], name: str, obj: Any, base_dir: Path, array: bool = False) -> None:
    out.append("")
    out.append(f"[[{name}]]" if array else f"[{name}]")
    _emit_keys(out, obj, obj._sections(), base_dir)


# --------------------------------------------------------------------------------------------------------
# Parsing and validation
# --------------------------------------------------------------------------------------------------------


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, dict):
        return "table"
    if isinstance(v, list):
        return "array"
    return type(v).__name__


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _coerce(spec: KeySpec, value: Any, key: str) -> Any:
    """Check the TOML type of ``value`` for ``spec`` and return it as the field's Python type."""
    t = spec.type
    if t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"must be a number, got {_type_name(value)} {_short(value)}")
        try:
            value = float(value)
        except OverflowError:
            raise ConfigError(key, "number too large") from None
        if not math.isfinite(value):
            raise ConfigError(key, f"must be a finite number, got {value!r}")
        if abs(value) > FLOAT_LIMIT:
            raise ConfigError(key, f"{value!r} is too large: magnitudes are at most {FLOAT_LIMIT:g} "
                              "(beyond it the computations overflow); check the value and its unit")
        if value != 0 and abs(value) < FLOAT_TINY:
            raise ConfigError(key, f"{value!r} is too small: nonzero magnitudes are at least "
                              f"{FLOAT_TINY:g} (below it the computations underflow); write 0 or "
                              "check the value and its unit")
        return value
    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            hint = " (write it without a decimal point)" if isinstance(value, float) else ""
            raise ConfigError(
                key, f"must be an integer{hint}, got {_type_name(value)} {_short(value)}"
            )
        if not -(2**63) <= value < 2**63:  # TOML integers are 64-bit
            raise ConfigError(key, "integer out of the 64-bit range of TOML")
        return value
    if t == "bool":
        if not isinstance(value, bool):
            raise ConfigError(
                key, f"must be true or false, got {_type_name(value)} {_short(value)}"
            )
        return value
    if t in ("str", "path"):
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {_type_name(value)} {_short(value)}")
        if spec.choices is not None and value not in spec.choices:
            raise ConfigError(key, f"unknown value {_short(value)}; allowed: {spec.allowed}")
        if t == "path" and not value:
            raise ConfigError(key, "must be a file name, got an empty string")
        return value
    raise AssertionError(f"unknown type {t!r} in the registry")


def _read_keys(
    data: Any,
    prefix: str,
    specs: tuple[KeySpec, ...],
    context: str = "",
    extra: tuple[str, ...] = (),
    elsewhere: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Validate a table against ``specs``: unknown keys, types, single-key ranges, defaults.

    ``extra`` are keys handled by the caller (sub-tables); ``elsewhere`` maps keys that belong to another
    variant to the message that says when they are allowed.
    """
    if not isinstance(data, dict):
        raise ConfigError(prefix or "run file", f"must be a table, got {_type_name(data)}")
    names = {s.key for s in specs}
    for k in data:
        if k in names or k in extra:
            continue
        full = _join(prefix, k)
        if elsewhere and k in elsewhere:
            raise ConfigError(full, elsewhere[k])
        allowed = sorted((names | set(extra)) - {"kind"}) if context else sorted(names | set(extra))
        import difflib

        close = difflib.get_close_matches(str(k), allowed, n=1, cutoff=0.6)
        hint = f"did you mean {_join(prefix, close[0])!r}? " if close else ""
        raise ConfigError(
            full,
            f"unknown key; {hint}allowed keys{context}: {', '.join(allowed) if allowed else '(none)'}",
        )
    values: dict[str, Any] = {}
    for spec in specs:
        full = _join(prefix, spec.key)
        if spec.key not in data:
            if spec.required:
                raise ConfigError(full, f"missing (required); allowed: {spec.allowed}")
            values[spec.key] = spec.default
            continue
        value = _coerce(spec, data[spec.key], full)
        if spec.check is not None and not spec.check(value):
            raise ConfigError(full, f"{_short(value)} is out of range; allowed: {spec.allowed}")
        values[spec.key] = value
    return values


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _kind_of(data: Any, prefix: str, base: str) -> str:
    """Read and check the ``kind`` of a kinded table before its other keys."""
    if not isinstance(data, dict):
        raise ConfigError(prefix, f"must be a table, got {_type_name(data)}")
    spec = _SPEC[(base, "kind")]
    key = f"{prefix}.kind"
    if "kind" not in data:
        if spec.required:
            raise ConfigError(key, f"missing (required); allowed: {spec.allowed}")
        return spec.default
    return _coerce(spec, data["kind"], key)


def _array(data: Mapping, name: str, prefix: str) -> list:
    """An array of tables (``[[name]]``), or [] when absent."""
    if name not in data:
        return []
    value = data[name]
    if not isinstance(value, list):
        raise ConfigError(prefix, f"must be an array of tables: write [[{prefix}]] for each entry")
    return value


def _table(data: Mapping, name: str, prefix: str) -> dict | None:
    if name not in data:
        return None
    value = data[name]
    if not isinstance(value, dict):
        raise ConfigError(prefix, f"must be a table: write [{prefix}] (not [[{prefix}]])")
    return value


def _fmt(v: float) -> str:
    return f"{v:.10g}"


def _q(us: UnitSystem, value: float, dimension: str, rounding: str = "nearest") -> str:
    """A run-file value (already in ``us``) for a message, with its unit: "0.2 fs", "-200 nm"."""
    return us.quantity(value, dimension, digits=10, rounding=rounding, converted=True)


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a run file.

    Parameters
    ----------
    path : str or Path
        The TOML run file. Relative file names inside it (``potential.file``) are resolved against its
        folder.

    Raises
    ------
    ConfigError
        Missing or unreadable file, invalid TOML (the message gives the line), or an invalid run.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "no such run file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(str(path), f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ConfigError(str(path), f"cannot read the run file: {e.strerror or e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib's message ends with "(at line L, column C)".
        raise ConfigError(str(path), f"not valid TOML: {e}") from None
    return parse_config(data, path.parent.absolute())


def parse_config(data: dict, base_dir: str | Path) -> RunConfig:
    """Validate a run-file dict (as from ``tomllib``) and return the resolved :class:`RunConfig`.

    Parameters
    ----------
    data : dict
        The parsed TOML document.
    base_dir : str or Path
        Folder that relative file names are resolved against (the run file's folder).

    Raises
    ------
    ConfigError
        The first problem found, with the dotted key to change and what is allowed.
    """
    base_dir = Path(base_dir)
    if not isinstance(data, dict):
        raise ConfigError("run file", f"must be a TOML document (a table), got {_type_name(data)}")
    top_names = {s.key for s in SECTIONS["top"]}
    for k, v in data.items():
        if k in top_names or k in _TOP_TABLES:
            continue
        what = "section" if isinstance(v, (dict, list)) else "key"
        import difflib

        close = difflib.get_close_matches(str(k), list(_TOP_TABLES) + sorted(top_names), n=1,
                                          cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            str(k),
            f"unknown {what}; {hint}allowed sections: {', '.join(_TOP_TABLES)}; "
            f"allowed top-level keys: {', '.join(sorted(top_names))}",
        )
    for name in _REQUIRED_TABLES:
        if name not in data:
            raise ConfigError(name, f"missing section [{name}] (required)")

    top = _read_keys({k: data[k] for k in top_names if k in data}, "", SECTIONS["top"])
    units = Units(**_read_keys(_table(data, "units", "units") or {}, "units", SECTIONS["units"]))
    us = UnitSystem(units.system)
    particles = Particles(
        **_read_keys(_table(data, "particles", "particles"), "particles", SECTIONS["particles"])
    )
    grid = _parse_grid(_table(data, "grid", "grid"), us)
    time = _parse_time(_table(data, "time", "time"), us)
    potential = tuple(
        _parse_potential(item, f"potential[{i}]", units, base_dir)
        for i, item in enumerate(_array(data, "potential", "potential"))
    )
    fields = tuple(
        _parse_field(item, f"field[{i}]", grid, us)
        for i, item in enumerate(_array(data, "field", "field"))
    )
    _check_time_scales(fields, time, us)
    _check_absorber_strength(grid, particles, us)
    interaction = _parse_interaction(_table(data, "interaction", "interaction"))
    reservoirs_data = _table(data, "reservoirs", "reservoirs")
    initial = _parse_initial(_table(data, "initial", "initial"), particles, grid, us,
                             open_system=reservoirs_data is not None)
    volumes = _parse_volumes(_array(data, "volume", "volume"), grid, us)
    trajectories = _parse_trajectories(_table(data, "trajectories", "trajectories"))
    method_data = _table(data, "method", "method")
    method = (
        None
        if method_data is None
        else MethodConfig(**_read_keys(method_data, "method", SECTIONS["method"]))
    )
    if method is not None and method.basis_size is None:
        method = dataclasses.replace(method, basis_size=default_basis_size(particles.count))
    if method is not None and method.exchange and particles.statistics != "fermion":
        raise ConfigError(
            "method.exchange",
            'exchange = true needs particles.statistics = "fermion" '
            "(distinguishable electrons have no exchange)",
        )
    if (method is not None and method.scheme == "interacting" and particles.statistics == "fermion"
            and particles.count > 1 and not method.exchange):
        raise ConfigError(
            "method.exchange",
            'scheme = "interacting" with fermions uses an antisymmetrised basis: set exchange = true '
            '(or particles.statistics = "distinguishable")',
        )
    energy = EnergyConfig(
        **_read_keys(_table(data, "energy", "energy") or {}, "energy", SECTIONS["energy"])
    )
    numerics = NumericsConfig(
        **_read_keys(_table(data, "numerics", "numerics") or {}, "numerics", SECTIONS["numerics"])
    )
    steady_data = _table(data, "steady_state", "steady_state")
    reservoirs, steady_state = None, None
    if reservoirs_data is not None:
        reservoirs, steady_state = _parse_open_system(
            reservoirs_data, steady_data, particles, grid, time, fields, interaction, method,
            numerics, us)
    elif steady_data is not None:
        raise ConfigError("steady_state", "only with [reservoirs] (an open-system run)")
    return RunConfig(
        schema=top["schema"],
        title=top["title"],
        units=units,
        particles=particles,
        grid=grid,
        time=time,
        potential=potential,
        field=fields,
        interaction=interaction,
        initial=initial,
        volume=volumes,
        trajectories=trajectories,
        method=method,
        energy=energy,
        numerics=numerics,
        reservoirs=reservoirs,
        steady_state=steady_state,
        base_dir=base_dir,
    )


def _parse_open_system(res_data, steady_data, particles, grid, time, fields, interaction, method,
                       numerics, us: UnitSystem):
    """``[reservoirs]`` and ``[steady_state]``: defaults resolved, and the rules an open run needs
    (docs/run-file.md, docs/devices.md)."""
    from bohmpower.units import BOLTZMANN_HARTREE_PER_K

    r = _read_keys(res_data, "reservoirs", SECTIONS["reservoirs"])
    steady = steady_data or {}
    auto = isinstance(steady, dict) and steady.get("warm_up") == AUTO_WARM_UP
    if auto:  # resolved by the open-system solver, which knows the device (devices.engine)
        steady = {k: v for k, v in steady.items() if k != "warm_up"}
    st = _read_keys(steady, "steady_state", SECTIONS["steady_state"])
    if grid.boundary != "absorbing":
        raise ConfigError("grid.boundary", 'an open-system run ([reservoirs]) needs boundary = '
                          '"absorbing": electrons leave through the absorbing layers')
    if interaction.kind == "harmonic":
        raise ConfigError("interaction.kind", 'an open-system run takes kind = "soft_coulomb" or '
                          '"none": a harmonic W grows with the distance, so electrons in the two '
                          "leads would pull on each other more than on anything in the device")
    if interaction.kind != "none" and r["degeneracy"] == 2:
        raise ConfigError("reservoirs.degeneracy", "degeneracy = 2 doubles the current of one spin "
                          "species as an independent copy, which interacting electrons are not (the "
                          "two species would repel each other): use degeneracy = 1 with "
                          "[interaction], or kind = \"none\"")
    if method is not None and (method.scheme != "zeroth_order" or method.exchange):
        raise ConfigError("method", "open-system runs propagate each injected electron's own "
                          'wavefunction: use scheme = "zeroth_order" and exchange = false')
    for i, f in enumerate(fields):
        if f.kind != "linear_drop" or f.time_profile not in ("constant", "turn_on"):
            raise ConfigError(f"field[{i}].kind", "open-system runs take linear_drop fields with "
                              'time_profile = "constant" (a static bias) or "turn_on" (a bias '
                              "switched on, whose transient is recorded); the leads must stay flat "
                              "and the bias must end fixed for the steady state")
    kt = us.from_atomic(BOLTZMANN_HARTREE_PER_K * r["temperature"], "energy")
    if r["energy_max"] is None:
        r["energy_max"] = r["fermi_energy"] + 10.0 * kt
    if not r["energy_min"] < r["energy_max"]:
        raise ConfigError("reservoirs.energy_min", f"must be < energy_max "
                          f"({_q(us, r['energy_max'], 'energy')})")
    sigma = r["packet_width"]
    lo = grid.x_min + grid.absorber_width
    hi = grid.x_max - grid.absorber_width
    if r["x_left"] is None:
        r["x_left"] = lo + PACKET_HALF_SPAN * sigma
    if r["x_right"] is None:
        r["x_right"] = hi - PACKET_HALF_SPAN * sigma
    for key, c in (("x_left", r["x_left"]), ("x_right", r["x_right"])):
        if not _inside(lo, hi, c, sigma):
            raise ConfigError(f"reservoirs.{key}", f"the injected packet ({_q(us, c, 'length')} +/- 3 "
                              f"packet_width) must lie inside [{_fmt(lo)}, {_fmt(hi)}] "
                              f"{us.unit('length')}, the grid minus its absorbing layers; move it or "
                              "reduce reservoirs.packet_width")
    if not r["x_left"] + PACKET_HALF_SPAN * sigma < r["x_right"] - PACKET_HALF_SPAN * sigma:
        raise ConfigError("reservoirs.x_right", "the two injection regions (centre +/- 3 "
                          "packet_width) overlap; widen the grid or reduce packet_width")
    # Resolution: the fastest packet, after falling through the whole bias, with 3 sigma_k of spread.
    m = particles.mass
    bias = sum(abs(us.to_atomic(f.bias, "energy")) for f in fields)
    k_top = math.sqrt(2.0 * m * (us.to_atomic(r["energy_max"], "energy") + bias)) + \
        PACKET_HALF_SPAN / (2.0 * us.to_atomic(sigma, "length"))
    dx = us.to_atomic(grid.dx, "length")
    k_limit = numerics.resolution_fraction * math.pi / dx
    if k_top > k_limit:
        need = 2 * math.ceil(grid.points * k_top / k_limit / 2)
        raise ConfigError("grid.points", f"the injected packets are not resolved: their wavenumbers "
                          f"reach {us.quantity(k_top, 'wavenumber', digits=4)} (sqrt(2m(energy_max + "
                          f"|bias|)) + 3/(2 packet_width)), above resolution_fraction*pi/dx = "
                          f"{us.quantity(k_limit, 'wavenumber', digits=4)}; use grid.points >= {need}, "
                          "a wider reservoirs.packet_width or a lower reservoirs.energy_max")
    # Injection window: every energy cell is attempted once per h/dE; the averaging time must hold
    # at least one attempt of each cell (docs/devices.md, "Injection").
    if auto:
        st["warm_up"] = AUTO_WARM_UP
        return ReservoirsConfig(**r), SteadyStateConfig(**st)
    if st["warm_up"] is None:
        st["warm_up"] = 0.5 * time.t_end
    if not st["warm_up"] < time.t_end:
        raise ConfigError("steady_state.warm_up", f"must be < time.t_end ({_q(us, time.t_end, 'time')})")
    d_e = us.to_atomic(r["energy_max"] - r["energy_min"], "energy") / r["energy_cells"]
    period = us.from_atomic(2.0 * math.pi / d_e, "time")
    averaging = time.t_end - st["warm_up"]
    if averaging < period:
        raise ConfigError("steady_state.warm_up", f"the averaging time t_end - warm_up = "
                          f"{_q(us, averaging, 'time')} is shorter than the injection period h/dE = "
                          f"{_q(us, period, 'time')} of the energy spacing dE = (energy_max - "
                          f"energy_min)/energy_cells = {us.quantity(d_e, 'energy', digits=4)}: each energy cell "
                          "would be tried less than once; lengthen time.t_end, shorten the warm-up or "
                          "use fewer reservoirs.energy_cells")
    return ReservoirsConfig(**r), SteadyStateConfig(**st)


def _parse_grid(data: dict, us: UnitSystem) -> GridConfig:
    v = _read_keys(data, "grid", SECTIONS["grid"])
    if not v["x_min"] < v["x_max"]:
        raise ConfigError("grid.x_max", f"must be > grid.x_min ({_q(us, v['x_min'], 'length')})")
    length = v["x_max"] - v["x_min"]
    if not math.isfinite(length):
        raise ConfigError("grid.x_max", "x_max - x_min is too large to represent")
    if v["boundary"] == "absorbing":
        width = v["absorber_width"]
        if width is None:
            raise ConfigError(
                "grid.absorber_width",
                'required when grid.boundary = "absorbing" '
                f"(0 < width < (x_max - x_min)/4 = {_q(us, length / 4, 'length')})",
            )
        if not 0 < width < length / 4:
            raise ConfigError(
                "grid.absorber_width",
                f"{_q(us, width, 'length')} is out of range; allowed: 0 < width < "
                f"(x_max - x_min)/4 = {_q(us, length / 4, 'length')}",
            )
    else:
        for key in ("absorber_width", "absorber_strength"):
            if v[key] is not None:
                raise ConfigError(
                    f"grid.{key}", 'only with grid.boundary = "absorbing" (this grid is periodic)'
                )
    return GridConfig(**v)


def _parse_time(data: dict, us: UnitSystem) -> TimeConfig:
    v = _read_keys(data, "time", SECTIONS["time"])
    dt, t_end = v["dt"], v["t_end"]
    n = _whole_steps(t_end, dt, "time.dt", "t_end", us)
    window = v["window"]
    if n is None:
        raise ConfigError(
            "time.dt",
            f"t_end/dt = {_fmt(t_end / dt)} is not a whole number; nearest valid dt = "
            f"{_q(us, _nearest_whole_dt(dt, t_end, window), 'time')} (or change time.t_end)",
        )
    if window is not None:
        if window > t_end:
            raise ConfigError("time.window", f"must be <= time.t_end ({_q(us, t_end, 'time')})")
        if _whole_steps(window, dt, "time.window", "window", us) is None:
            nearest = max(1, round(window / dt)) * dt
            raise ConfigError(
                "time.window",
                f"window/dt = {_fmt(window / dt)} is not a whole number; nearest valid window = "
                f"{_q(us, nearest, 'time')}",
            )
    return TimeConfig(**v)


def _nearest_whole_dt(dt: float, t_end: float, window: float | None) -> float:
    """The dt = t_end/n nearest to ``dt`` that also makes window/dt whole (when window is given and
    one exists within 1000 step counts of round(t_end/dt)); the value as a message writes it (10
    significant digits) passes the whole-number rule."""
    n0 = max(1, round(t_end / dt))
    if window is None:
        return t_end / n0
    for offset in range(1000):
        for n in sorted({n0 - offset, n0 + offset}, key=lambda m: abs(t_end / max(m, 1) - dt)):
            if n < 1:
                continue
            candidate = float(_fmt(t_end / n))
            r = window / candidate
            if round(r) >= 1 and abs(r - round(r)) <= STEP_TOLERANCE * round(r):
                return candidate
    return t_end / n0


def _whole_steps(span: float, dt: float, key: str, name: str, us: UnitSystem) -> int | None:
    """round(span/dt) if span/dt is a whole number >= 1 to STEP_TOLERANCE (relative), else None."""
    ratio = span / dt
    if not math.isfinite(ratio) or ratio > MAX_STEPS:
        raise ConfigError(
            key, f"{name}/dt = {_fmt(ratio)} steps is too many (at most {MAX_STEPS:.0e})"
        )
    n = round(ratio)
    if n < 1:
        raise ConfigError(
            key, f"{name} = {_q(us, span, 'time')} is shorter than one time step dt = "
            f"{_q(us, dt, 'time')}"
        )
    if abs(ratio - n) > STEP_TOLERANCE * n:
        return None
    return n


def _parse_potential(data: Any, prefix: str, units: Units, base_dir: Path) -> PotentialPiece:
    kind = _kind_of(data, prefix, "potential")
    v = _read_keys(
        data, prefix, _specs("potential", f"potential.{kind}"), context=f" for kind {kind!r}"
    )
    if kind == "table":
        v["file"] = _check_table_file(base_dir / v["file"], f"{prefix}.file")
        if v["table_units"] is None:
            v["table_units"] = units.system
    return PotentialPiece(**v)


def _check_table_file(path: Path, key: str) -> Path:
    """The table must exist and hold two finite columns (x, U) with x increasing."""
    import numpy as np  # only for the rare table piece

    try:
        exists = path.is_file()
    except (OSError, ValueError):
        exists = False
    if not exists:
        raise ConfigError(
            key, f"{path}: no such file (names are relative to the run file's folder)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file warns; it is refused below
            table = np.loadtxt(path, ndmin=2, dtype=float)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ConfigError(key, f"{path}: not a two-column text table x, U ({e})") from None
    if table.ndim != 2 or table.shape[1] != 2 or table.shape[0] < 2:
        raise ConfigError(
            key, f"{path}: needs two columns (x, U) and at least 2 rows, got shape {table.shape}"
        )
    if not np.all(np.isfinite(table)):
        raise ConfigError(key, f"{path}: holds non-finite values")
    if not np.all(np.diff(table[:, 0]) > 0):
        raise ConfigError(key, f"{path}: x (first column) must be strictly increasing")
    return path


#: An absorbing layer stronger than this multiple of the grid's largest kinetic energy reflects like a
#: wall (and the reflection estimate would need ever more slabs): refused.
MAX_ABSORBER_RATIO = 1e4


def _check_absorber_strength(grid: Any, particles: Any, us: UnitSystem) -> None:
    strength = getattr(grid, "absorber_strength", None)
    if strength is None or grid.boundary != "absorbing":
        return
    dx = us.to_atomic(grid.x_max - grid.x_min, "length") / grid.points
    e_max = (math.pi / dx) ** 2 / (2.0 * particles.mass)
    limit = us.from_atomic(MAX_ABSORBER_RATIO * e_max, "energy")
    if strength > limit:
        raise ConfigError("grid.absorber_strength", f"{_q(us, strength, 'energy')} is above the "
                          f"limit {us.quantity(limit, 'energy', rounding='down', converted=True)} "
                          f"({MAX_ABSORBER_RATIO:g} times the grid's largest kinetic energy): "
                          "such a layer reflects like a wall; leave it out for the automatic "
                          "value, or lower it")


def _check_time_scales(fields: tuple, time: Any, us: UnitSystem) -> None:
    """A drive's time scale must be resolved by dt: a pulse (or turn-on) shorter than one step is
    sampled at most once, and sums over steps then give NaN or nonsense."""
    for i, f in enumerate(fields):
        for name in ("duration", "t_on"):
            val = getattr(f, name, None)
            if val is not None and val < time.dt:
                raise ConfigError(f"field[{i}].{name}", f"{_q(us, val, 'time')} is shorter than "
                                  f"time.dt = {_q(us, time.dt, 'time')}: the drive is not "
                                  f"resolved: use {name} >= {_q(us, time.dt, 'time')} (the "
                                  f"limit; better 10 dt = {_q(us, 10 * time.dt, 'time')}) or "
                                  "reduce time.dt")
        freq = getattr(f, "frequency", None)
        if freq is not None and freq * time.dt > 0.5:
            limit = us.quantity(0.5 / time.dt, "frequency", rounding="down", converted=True)
            raise ConfigError(f"field[{i}].frequency", f"{_q(us, freq, 'frequency')} is above the "
                              f"limit 1/(2 dt) = {limit} of time.dt = {_q(us, time.dt, 'time')}: "
                              f"the sine is not resolved; use frequency <= {limit} or reduce "
                              "time.dt")


def _parse_field(data: Any, prefix: str, grid: GridConfig, us: UnitSystem) -> FieldPiece:
    kind = _kind_of(data, prefix, "field")
    profile_spec = _SPEC[("field", "time_profile")]
    profile = profile_spec.default
    if "time_profile" in data:
        profile = _coerce(profile_spec, data["time_profile"], f"{prefix}.time_profile")
    own = _specs("field", f"field.{kind}", f"field.time_profile.{profile}")
    own_names = {s.key for s in own}
    elsewhere = {
        s.key: f"only with time_profile = {s.section.rsplit('.', 1)[1]!r} "
        f"(this field's time_profile is {profile!r})"
        for p in TIME_PROFILES
        for s in SECTIONS.get(f"field.time_profile.{p}", ())
        if s.key not in own_names
    }
    v = _read_keys(
        data,
        prefix,
        own,
        context=f" for kind {kind!r} with time_profile {profile!r}",
        elsewhere=elsewhere,
    )
    if kind == "linear_drop":
        if not v["x_left"] < v["x_right"]:
            raise ConfigError(f"{prefix}.x_right",
                              f"must be > x_left ({_q(us, v['x_left'], 'length')})")
        if v["x_left"] < grid.x_min:
            raise ConfigError(f"{prefix}.x_left",
                              f"must be >= grid.x_min ({_q(us, grid.x_min, 'length')})")
        if v["x_right"] > grid.x_max:
            raise ConfigError(f"{prefix}.x_right",
                              f"must be <= grid.x_max ({_q(us, grid.x_max, 'length')})")
        if v["smoothing"] is None:
            v["smoothing"] = (v["x_right"] - v["x_left"]) / 20.0
    elif kind == "uniform" and grid.boundary == "periodic":
        raise ConfigError(
            f"{prefix}.kind",
            "a uniform field is not allowed on a periodic grid (its potential is not periodic); "
            'use grid.boundary = "absorbing" or a linear_drop field',
        )
    return FieldPiece(**v)


def _parse_interaction(data: dict | None) -> InteractionConfig:
    if data is None:
        return InteractionConfig()
    kind = _kind_of(data, "interaction", "interaction")
    v = _read_keys(
        data,
        "interaction",
        _specs("interaction", f"interaction.{kind}"),
        context=f" for kind {kind!r}",
    )
    return InteractionConfig(**v)


def _wavenumber(v: dict, prefix: str, mass: float, us: UnitSystem) -> float:
    """``wavenumber``, or +sqrt(2 m energy)/hbar in the run's units."""
    k, e = v.pop("wavenumber"), v.pop("energy")
    if k is not None and e is not None:
        raise ConfigError(f"{prefix}.energy", "give wavenumber or energy, not both")
    if k is None and e is None:
        raise ConfigError(
            f"{prefix}.wavenumber", "missing: give wavenumber (1/length) or energy (>= 0)"
        )
    if k is not None:
        return k
    k_atomic = math.sqrt(2.0 * mass * us.to_atomic(e, "energy"))  # hbar = 1
    k = us.from_atomic(k_atomic, "wavenumber")
    if not math.isfinite(k):
        raise ConfigError(f"{prefix}.energy", "too large")
    return k


def _inside(lo: float, hi: float, center: float, width: float) -> bool:
    return center - PACKET_HALF_SPAN * width >= lo and center + PACKET_HALF_SPAN * width <= hi


def _parse_initial(
    data: dict | None, particles: Particles, grid: GridConfig, us: UnitSystem,
    open_system: bool = False,
) -> InitialConfig:
    data = {} if data is None else data
    v = _read_keys(data, "initial", SECTIONS["initial"], extra=tuple(_INITIAL_TABLES))
    layer = grid.absorber_width if grid.boundary == "absorbing" else 0.0
    lo, hi = grid.x_min + layer, grid.x_max - layer
    where = "the grid minus its absorbing layers" if layer else "the grid"

    packets = []
    for i, item in enumerate(_array(data, "packet", "initial.packet")):
        prefix = f"initial.packet[{i}]"
        p = _read_keys(item, prefix, SECTIONS["initial.packet"])
        p["wavenumber"] = _wavenumber(p, prefix, particles.mass, us)
        if not _inside(lo, hi, p["center"], p["width"]):
            raise ConfigError(
                f"{prefix}.center",
                f"the packet (center +/- 3 width = [{_fmt(p['center'] - 3 * p['width'])}, "
                f"{_fmt(p['center'] + 3 * p['width'])}] {us.unit('length')}) must lie inside "
                f"[{_fmt(lo)}, {_fmt(hi)}] {us.unit('length')}, {where}; move the center or reduce "
                "the width",
            )
        packets.append(Packet(**p))

    train = None
    train_data = _table(data, "train", "initial.train")
    if train_data is not None:
        t = _read_keys(train_data, "initial.train", SECTIONS["initial.train"])
        t["wavenumber"] = _wavenumber(t, "initial.train", particles.mass, us)
        # Members are equally spaced, so the first and the last are the extreme ones.
        last = t["first_center"] + (t["count"] - 1) * t["spacing"]
        for key, center in (("first_center", t["first_center"]), ("spacing", last)):
            if not (math.isfinite(center) and _inside(lo, hi, center, t["width"])):
                raise ConfigError(
                    f"initial.train.{key}",
                    f"a member at {_q(us, center, 'length')} (+/- 3 width) does not lie inside "
                    f"[{_fmt(lo)}, {_fmt(hi)}] {us.unit('length')}, {where}",
                )
        train = Train(**t)

    eigenstates = tuple(
        Eigenstate(**_read_keys(item, f"initial.eigenstate[{i}]", SECTIONS["initial.eigenstate"]))
        for i, item in enumerate(_array(data, "eigenstate", "initial.eigenstate"))
    )
    initial = InitialConfig(tuple(packets), train, eigenstates, v["many_body_state"])
    n_orb = initial.n_orbitals
    if initial.many_body_state is not None:
        if n_orb:
            raise ConfigError(
                "initial.many_body_state",
                "no orbitals ([[initial.packet]], [initial.train], [[initial.eigenstate]]) are "
                "allowed with many_body_state",
            )
    elif open_system:
        if n_orb:
            raise ConfigError(
                "initial",
                "an open-system run ([reservoirs]) starts with an empty device: electrons enter from "
                "the reservoirs; remove [[initial.packet]], [initial.train] and [[initial.eigenstate]]",
            )
    elif n_orb != particles.count:
        raise ConfigError(
            "initial",
            f"{n_orb} orbitals ({len(packets)} packets, {train.count if train else 0} train members, "
            f"{len(eigenstates)} eigenstates) for particles.count = {particles.count}: give one "
            "orbital per electron, or [initial] many_body_state",
        )
    return initial


def _parse_volumes(items: list, grid: GridConfig, us: UnitSystem) -> tuple[VolumeConfig, ...]:
    volumes: list[VolumeConfig] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        prefix = f"volume[{i}]"
        v = _read_keys(item, prefix, SECTIONS["volume"])
        if not _VOLUME_NAME.fullmatch(v["name"]):
            raise ConfigError(
                f"{prefix}.name", f"{_short(v['name'])} is not allowed; use [A-Za-z0-9_-]+"
            )
        if v["name"] in seen:
            raise ConfigError(
                f"{prefix}.name", f"duplicate name {v['name']!r} (also volume[{seen[v['name']]}])"
            )
        seen[v["name"]] = i
        if not v["x_min"] < v["x_max"]:
            raise ConfigError(f"{prefix}.x_max",
                              f"must be > x_min ({_q(us, v['x_min'], 'length')})")
        if v["x_min"] < grid.x_min:
            raise ConfigError(f"{prefix}.x_min",
                              f"must be >= grid.x_min ({_q(us, grid.x_min, 'length')})")
        if v["x_max"] > grid.x_max:
            raise ConfigError(f"{prefix}.x_max",
                              f"must be <= grid.x_max ({_q(us, grid.x_max, 'length')})")
        volumes.append(VolumeConfig(**v))
    return tuple(volumes)


def _parse_trajectories(data: dict | None) -> TrajectoriesConfig | None:
    if data is None:
        return None
    v = _read_keys(data, "trajectories", SECTIONS["trajectories"])
    if v["store"] is not None and v["store"] > v["count"]:
        raise ConfigError("trajectories.store", f"must be <= trajectories.count ({v['count']})")
    return TrajectoriesConfig(**v)


# --------------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------------


def describe(config: RunConfig) -> str:
    """A readable multi-line summary of the resolved run, in the run's units with unit names."""
    us = config.unit_system

    def q(value: float | None, dimension: str) -> str:
        if value is None:
            return "automatic"
        return us.quantity(value, dimension, converted=True)

    def piece_text(obj: Any) -> str:
        parts = []
        for spec in _specs(*obj._sections()):
            if spec.key in ("kind",) or not hasattr(obj, spec.key):
                continue
            value = getattr(obj, spec.key)
            if value is None:
                continue
            if spec.type == "float":
                parts.append(f"{spec.key} {q(value, spec.dimension)}")
            elif spec.type == "path":
                parts.append(f"{spec.key} {value}")
            else:
                parts.append(f"{spec.key} {value}")
        return ", ".join(parts)

    g, t = config.grid, config.time
    lines = [f"run: {config.title or '(untitled)'}  [{config.schema}]"]
    lines.append(
        f"  units: {us.name} ({us.unit('length')}, {us.unit('energy')}, {us.unit('time')})"
    )
    p = config.particles
    lines.append(f"  particles: {p.count} x {p.statistics}, mass {p.mass:.6g} electron masses")
    grid_line = (
        f"  grid: [{q(g.x_min, 'length')}, {q(g.x_max, 'length')}), {g.points} points, "
        f"dx = {q(g.dx, 'length')}, pi/dx = {q(math.pi / g.dx, 'wavenumber')}, {g.boundary}"
    )
    if g.boundary == "absorbing":
        grid_line += (
            f" (layers {q(g.absorber_width, 'length')} wide, strength "
            f"{q(g.absorber_strength, 'energy')})"
        )
    lines.append(grid_line)
    lines.append(
        f"  time: dt = {q(t.dt, 'time')}, t_end = {q(t.t_end, 'time')}, {t.n_steps} steps, "
        f"{t.n_frames} frames (every {t.save_every} steps), power window "
        f"{q(t.window_length, 'time')}" + (" (save_every*dt)" if t.window is None else "")
    )
    if config.potential:
        lines.append("  potential U0:")
        for i, piece in enumerate(config.potential):
            lines.append(f"    [{i}] {piece.kind}: {piece_text(piece)}")
    else:
        lines.append("  potential U0: none")
    if config.field:
        lines.append("  drives:")
        for i, piece in enumerate(config.field):
            lines.append(f"    [{i}] {piece.kind}: {piece_text(piece)}")
    else:
        lines.append("  drives: none")
    inter = config.interaction
    lines.append(
        f"  interaction: {inter.kind}" + (f" ({piece_text(inter)})" if inter.kind != "none" else "")
    )
    init = config.initial
    if config.reservoirs is not None:
        lines.append("  initial state: an empty device (electrons enter from the reservoirs)")
    elif init.many_body_state is not None:
        lines.append(
            f"  initial state: many-body eigenstate {init.many_body_state} of the full Hamiltonian"
        )
    else:
        lines.append(
            f"  initial state: {init.n_orbitals} orbital(s) "
            f"({'Slater determinant' if p.statistics == 'fermion' else 'product'})"
        )
        for i, pk in enumerate(init.packet):
            lines.append(f"    packet[{i}]: {piece_text(pk)}")
        if init.train is not None:
            lines.append(f"    train: {piece_text(init.train)}")
        for i, e in enumerate(init.eigenstate):
            lines.append(f"    eigenstate[{i}]: bound state {e.index} of U0")
    if config.volume:
        lines.append("  volumes:")
        for v in config.volume:
            edge = "sharp" if v.smoothing == 0 else f"smoothing {q(v.smoothing, 'length')}"
            lines.append(f"    {v.name}: [{q(v.x_min, 'length')}, {q(v.x_max, 'length')}], {edge}")
    else:
        lines.append("  volumes: none")
    tr = config.trajectories
    if tr is not None:
        lines.append(f"  trajectories: {tr.count} samples, seed {tr.seed}, {tr.store} stored")
    if config.method is not None:
        mth = config.method
        text = f"  method: conditional wavefunctions, scheme {mth.scheme}, exchange = {str(mth.exchange).lower()}"
        if mth.scheme == "interacting":
            text += (f", basis_size {mth.basis_size}, overlap_cutoff {mth.overlap_cutoff:.3g}, "
                     f"norm_tolerance {mth.norm_tolerance:.3g}, "
                     f"energy_tolerance {mth.energy_tolerance:.3g}")
        lines.append(text)
    if config.reservoirs is not None:
        res, ss = config.reservoirs, config.steady_state
        lines.append(
            f"  reservoirs (open system): fermi_energy {q(res.fermi_energy, 'energy')}, temperature "
            f"{res.temperature:.6g} K, degeneracy {res.degeneracy}, packet_width "
            f"{q(res.packet_width, 'length')}, {res.energy_cells} energy cells from "
            f"{q(res.energy_min, 'energy')} to {q(res.energy_max, 'energy')}, injected at {q(res.x_left, 'length')} and "
            f"{q(res.x_right, 'length')}; steady state after "
            f"{'the estimated time to it' if ss.warm_up == AUTO_WARM_UP else q(ss.warm_up, 'time')} in "
            f"{ss.batches} batches"
        )
    lines.append(
        f"  energy: include_drive_potential = {str(config.energy.include_drive_potential).lower()}"
    )
    n = config.numerics
    lines.append(
        f"  numerics: order {n.order}, resolution_fraction {n.resolution_fraction:.6g}, "
        f"max_phase {n.max_phase:.6g} rad, warn_phase {n.warn_phase:.6g} rad, fft_workers "
        f"{n.fft_workers}, max_memory_gb "
        f"{'automatic' if n.max_memory_gb is None else f'{n.max_memory_gb:.6g}'}, "
        f"density_cutoff {n.density_cutoff:.3g}"
    )
    return "\n".join(lines)
