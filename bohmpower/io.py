"""Result files (HDF5, SPEC.md "Result file"): the only module that imports h5py.

Values arrive in atomic units and are written in the run's unit system, each dataset with a ``units``
attribute that pint can parse. Files are written to a temporary name and renamed, so a crash never
leaves a half-written result.
"""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np

import bohmpower
from bohmpower.errors import ConfigError, ResultFileError
from bohmpower.units import UnitSystem

SCHEMA = "bohmpower/1"

#: Dimension of every dataset name that can appear in a result file.
FIELD_DIMENSIONS = {
    "density": "density",
    "current": "current",
    "energy_density": "energy_density",
    "power_density": "power_density",
    "energy_current": "energy_current",
    "field_work_density": "power_density",
    "interaction_density": "power_density",
    "quantum_density": "power_density",
}
VOLUME_DIMENSIONS = {
    "particles": "dimensionless",
    "particle_flux": "current",
    "energy": "energy",
    "power": "power",
    "field_work": "power",
    "interaction": "power",
    "quantum": "power",
    "quantum_flux": "power",
    "quantum_nonlocal": "power",
    "boundary_flux": "power",
    "absorbed": "power",
}
GLOBAL_DIMENSIONS = {
    "norm": "dimensionless",
    "energy": "energy",
    "power": "power",
    "absorbed_power": "power",
    "total_power": "power",
}


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(bohmpower.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict:
    """Versions of the package and its numerical dependencies, the git commit, the time."""
    import numba
    import scipy

    return {
        "package": "bohmpower",
        "version": bohmpower.__version__,
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "numba_version": numba.__version__,
        "h5py_version": h5py.__version__,
        "git_commit": _git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def check_output_path(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing result unless asked to, before any work is done."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError("--output", f"{path} exists; pass --overwrite to replace it, or choose "
                          "another file with -o")
    if not path.parent.exists():
        raise ConfigError("--output", f"folder {path.parent} does not exist")


def _dataset(group, name, data, units: str, **kw):
    ds = group.create_dataset(name, data=np.asarray(data), **kw)
    ds.attrs["units"] = units
    return ds


def write_exact_result(path: Path, result, config, *, overwrite: bool = False) -> Path:
    """Write an exact run (``driver.ExactResult``, atomic units) as a SPEC.md result file."""
    path = Path(path)
    check_output_path(path, overwrite)
    us = UnitSystem(config.units.system)
    model = result.model
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        attrs = {
            "schema": SCHEMA,
            "method": "exact",
            "config": config.to_toml(),
            "config_hash": config.config_hash(),
            "units_system": config.units.system,
            "ranks": 1,
            "seed": config.trajectories.seed if config.trajectories else -1,
            "samples": 0,
            "wall_time": result.wall_time,
            "include_drive_potential": bool(model.include_drive_potential),
            "window": us.from_atomic(model.config.time.window or
                                     model.config.time.save_every * model.config.time.dt, "time"),
            "n_particles": model.n_particles,
            "statistics": model.statistics,
        }
        attrs.update(provenance())
        for k, v in attrs.items():
            f.attrs[k] = v
        f.attrs["wall_time_units"] = "s"
        t = _dataset(f, "time", us.from_atomic(result.time, "time"), us.unit("time"))
        t.make_scale("time")
        g = f.create_group("grid")
        x = _dataset(g, "x", us.from_atomic(model.grid.x, "length"), us.unit("length"))
        x.make_scale("x")

        m = f.create_group("model")
        _dataset(m, "U0", us.from_atomic(model.u0, "energy"), us.unit("energy"))
        n_f = len(model.drives)
        # E(x)/f(t) = force_shape / q, q = -1 in atomic units.
        shapes = np.array([-d.force_shape for d in model.drives]).reshape(n_f, model.grid.n_x)
        _dataset(m, "field_shape", us.from_atomic(shapes, "electric_field"),
                 us.unit("electric_field"))
        profiles = np.array([d.profile(result.time) for d in model.drives]).reshape(
            n_f, len(result.time))
        _dataset(m, "time_profile", profiles, "dimensionless")
        _dataset(m, "gamma", us.from_atomic(model.gamma, "energy"), us.unit("energy"))
        m["U0"].dims[0].attach_scale(x)
        m["gamma"].dims[0].attach_scale(x)

        fg = f.create_group("fields")
        for name, data in result.fields.items():
            dim = FIELD_DIMENSIONS[name]
            ds = _dataset(fg, name, us.from_atomic(data, dim), us.unit(dim),
                          compression="gzip", compression_opts=4, shuffle=True)
            ds.dims[0].attach_scale(t)
            ds.dims[1].attach_scale(x)

        vg = f.create_group("volumes")
        for vol in model.volumes:
            grp = vg.create_group(vol.name)
            for key, val in (("x_min", vol.x_min), ("x_max", vol.x_max),
                             ("smoothing", vol.smoothing)):
                grp.attrs[key] = us.from_atomic(val, "length")
            grp.attrs["units"] = us.unit("length")
            for q, data in result.volumes[vol.name].items():
                dim = VOLUME_DIMENSIONS[q]
                ds = _dataset(grp, q, us.from_atomic(data, dim), us.unit(dim))
                ds.dims[0].attach_scale(t)

        gg = f.create_group("global")
        for q, data in result.globals.items():
            dim = GLOBAL_DIMENSIONS[q]
            ds = _dataset(gg, q, us.from_atomic(data, dim), us.unit(dim))
            ds.dims[0].attach_scale(t)

        dg = f.create_group("diagnostics")
        _dataset(dg, "crossings", 0, "dimensionless")
        _dataset(dg, "discarded_samples", 0, "dimensionless")
        pn = result.diagnostics.get("pn_direct_minus_balance", {})
        pg = dg.create_group("pn_direct_minus_balance")
        for name, data in pn.items():
            ds = _dataset(pg, name, us.from_atomic(data, "power"), us.unit("power"))
            ds.dims[0].attach_scale(t)
        hg = dg.create_group("health")
        for key, val in result.diagnostics.items():
            if key.startswith("health/"):
                _dataset(hg, key.split("/", 1)[1], val, "dimensionless")
        hg.attrs["warnings"] = "\n".join(result.warnings)
    os.replace(tmp, path)
    return path


def open_result(path: Path) -> h5py.File:
    """Open a result file read-only, refusing anything that is not one."""
    path = Path(path)
    if not path.exists():
        raise ResultFileError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ResultFileError(f"{path}: not an HDF5 file ({exc})") from None
    if f.attrs.get("schema") != SCHEMA:
        f.close()
        raise ResultFileError(f"{path}: not a bohmpower result file (schema attribute is "
                              f"{f.attrs.get('schema')!r}, expected {SCHEMA!r})")
    return f


def describe_result(path: Path) -> str:
    """What a result file holds: method, sizes, units, volumes, timings, provenance."""
    lines = []
    with open_result(path) as f:
        a = f.attrs
        n_t = f["time"].shape[0]
        n_x = f["grid/x"].shape[0]
        tu = f["time"].attrs["units"]
        lines.append(f"{path}: bohmpower result ({a['schema']}), method {a['method']}")
        lines.append(f"  created {a['created']} by bohmpower {a['version']} (git {a['git_commit']})")
        lines.append(f"  units: {a['units_system']}; {a['n_particles']} electron(s), "
                     f"{a['statistics']}; include_drive_potential = {bool(a['include_drive_potential'])}")
        lines.append(f"  grid: {n_x} points on [{f['grid/x'][0]:.6g}, "
                     f"{f['grid/x'][-1] + (f['grid/x'][1] - f['grid/x'][0]):.6g}) "
                     f"{f['grid/x'].attrs['units']}")
        lines.append(f"  time: {n_t} frames from {f['time'][0]:.6g} to {f['time'][-1]:.6g} {tu}")
        lines.append(f"  wall time: {a['wall_time']:.3g} s on {a['ranks']} rank(s); "
                     f"samples {a['samples']}")
        lines.append("  volumes:")
        for name, grp in f["volumes"].items():
            e = grp["energy"]
            lines.append(f"    {name}: [{grp.attrs['x_min']:.6g}, {grp.attrs['x_max']:.6g}] "
                         f"{grp.attrs['units']}, smoothing {grp.attrs['smoothing']:.3g}; "
                         f"E(t_end) = {e[-1]:.6g} {e.attrs['units']}")
        g = f["global"]
        lines.append(f"  global: norm {g['norm'][0]:.6g} -> {g['norm'][-1]:.6g}; internal energy "
                     f"{g['energy'][0]:.8g} -> {g['energy'][-1]:.8g} {g['energy'].attrs['units']}")
        lines.append(f"  datasets: {', '.join(sorted(_walk(f)))}")
    return "\n".join(lines)


def _walk(f) -> list[str]:
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names
