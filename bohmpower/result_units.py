"""Python results (``ExactResult``, ``CWResult``) in a chosen unit system, each array with its unit.

The solvers keep their results in atomic units. ``result.to_units("device")`` (or ``"atomic"``)
returns a :class:`ResultInUnits`: the same groups and names as the result, every array converted and
carried as a :class:`Quantity` (``values``, ``unit``), the unit written as in the result files
("fs", "nm", "eV", "eV/fs", "1/nm", ...). The dimension of each name comes from the result file's
tables (``bohmpower.io``: ``FIELD_DIMENSIONS``, ``VOLUME_DIMENSIONS``, ``GLOBAL_DIMENSIONS``,
``TRAJECTORY_DIMENSIONS``), so a result in memory and its result file agree number for number.

Examples
--------
>>> dev = result.to_units("device")                              # doctest: +SKIP
>>> dev.time.unit, dev.volumes["well"]["power"].unit             # doctest: +SKIP
('fs', 'eV/fs')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from bohmpower.units import UnitSystem

__all__ = ["Quantity", "ResultInUnits", "convert_result"]


class Quantity(NamedTuple):
    """An array (or number) and its unit string (pint can parse it)."""

    values: Any
    unit: str


@dataclass(frozen=True)
class ResultInUnits:
    """A result's arrays in one unit system.

    Attributes
    ----------
    system : {"atomic", "device"}
    time : Quantity
        Stored times.
    groups : dict
        Group name -> nested dict of :class:`Quantity` with the result's own names: for an exact run
        ``fields``, ``volumes``, ``globals``, ``windows``, ``trajectory_estimates``,
        ``stored_trajectories`` (those it has); for a CW run ``estimates`` and
        ``stored_trajectories``. Also reachable as attributes (``r.volumes``).
    """

    system: str
    time: Quantity
    groups: dict = field(default_factory=dict)

    def __getattr__(self, name: str):
        groups = self.__dict__.get("groups", {})
        if name in groups:
            return groups[name]
        raise AttributeError(f"{type(self).__name__} has no group {name!r}; it has: "
                             f"{', '.join(groups) or 'none'}")


def _tables() -> dict[str, dict[str, str]]:
    from bohmpower.io import (
        FIELD_DIMENSIONS,
        GLOBAL_DIMENSIONS,
        TRAJECTORY_DIMENSIONS,
        VOLUME_DIMENSIONS,
    )

    return {"fields": FIELD_DIMENSIONS, "volumes": VOLUME_DIMENSIONS,
            "globals": GLOBAL_DIMENSIONS, "trajectories": TRAJECTORY_DIMENSIONS}


#: Names that are the same quantity wherever they appear.
_AXES = {"time": "time", "t_start": "time", "x": "length", "profile_bandwidth": "length",
         "n_samples": "dimensionless"}


def _dimension(path: tuple[str, ...], tables: dict) -> str:
    """Dimension of the leaf at ``path`` (group names, then the quantity's own name)."""
    name = path[-1].rsplit("/", 1)[-1]  # "window/power" -> "power"
    if name.endswith("_worlds"):  # a count of contributing worlds
        return "dimensionless"
    base = name[: -len("_stderr")] if name.endswith("_stderr") else name
    if base in _AXES:
        return _AXES[base]
    # The group decides which table names the quantity ("energy" of a volume, of a trajectory...).
    parts = set(path[:-1]) | {p.split("/", 1)[0] for p in path}
    order = (["trajectories"] if "stored_trajectories" in parts else []) + (
        ["fields"] if "fields" in parts else []) + (
        ["globals"] if "globals" in parts else []) + ["volumes", "fields", "globals"]
    for table in order:
        if base in tables[table]:
            return tables[table][base]
    raise ValueError(f"no dimension known for {'/'.join(path)!r}")


def _convert(tree: Any, path: tuple[str, ...], us: UnitSystem, tables: dict) -> Any:
    if isinstance(tree, dict):
        return {k: _convert(v, path + (str(k),), us, tables) for k, v in tree.items()}
    dim = _dimension(path, tables)
    if isinstance(tree, (int, np.integer)) and dim == "dimensionless":
        return Quantity(int(tree), "dimensionless")
    if dim == "dimensionless" and np.asarray(tree).dtype.kind in "iu":
        return Quantity(np.asarray(tree).copy(), "dimensionless")
    values = us.from_atomic(np.asarray(tree, dtype=float) if np.ndim(tree) else float(tree), dim)
    return Quantity(values, us.unit(dim))


def convert_result(result: Any, system: str, groups: tuple[str, ...]) -> ResultInUnits:
    """The named ``groups`` of ``result`` (atomic units) and its ``time``, in ``system``.

    Parameters
    ----------
    result : ExactResult or CWResult
    system : {"atomic", "device"}
    groups : tuple of str
        Attribute names of ``result`` holding nested dicts of arrays; None-valued ones are skipped.

    Raises
    ------
    ConfigError
        An unknown unit system (the message lists the allowed ones).
    """
    us = system if isinstance(system, UnitSystem) else UnitSystem(system)
    tables = _tables()
    out = {}
    for name in groups:
        tree = getattr(result, name, None)
        if tree:
            out[name] = _convert(tree, (name,), us, tables)
    time = Quantity(us.from_atomic(np.asarray(result.time, dtype=float), "time"), us.unit("time"))
    return ResultInUnits(us.name, time, out)
