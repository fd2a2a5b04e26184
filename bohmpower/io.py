"""Result files (HDF5, SPEC.md "Result file"): the only module that imports h5py.

Values arrive in atomic units and are written in the run's unit system, each dataset with a ``units``
attribute that pint can parse and a ``long_name``. Every axis of every dataset is an HDF5 dimension
scale laid out the netCDF-4 way (a scale lives in the dataset's group or one above it), so
``xarray.open_datatree(path, engine="h5netcdf")`` names every dimension: ``time`` and ``x`` at the root,
``window`` in each ``window/`` group (its values are the window start times), ``sample`` and
``electron`` in ``/trajectories``, ``block`` in the block-mean groups, ``field`` in ``/model``, ``step``
in ``/diagnostics/basis``. Files are written to a temporary name and renamed, so a crash never leaves a
half-written result.
"""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

import bohmpower
from bohmpower.errors import ConfigError, ResultFileError, StorageError, is_out_of_space
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
    "quadrature_error": "power",
}
TRAJECTORY_DIMENSIONS = {
    "positions": "length",
    "velocities": "velocity",
    "energies": "energy",
    "quantum_potentials": "energy",
    "weights": "dimensionless",
}
GLOBAL_DIMENSIONS = {
    "norm": "dimensionless",
    "energy": "energy",
    "power": "power",
    "absorbed_power": "power",
    "total_power": "power",
}


#: ``long_name`` of each quantity (``_stderr`` twins: "standard error of ..."; window averages:
#: "window average of ..."; block means: "block means of ...").
LONG_NAMES = {
    # axes
    "time": "time",
    "x": "position",
    "window": "start of the power window",
    "t_start": "start of the power window",
    # /volumes/<name>
    "particles": "mean number of electrons in the volume, N_Omega",
    "particle_flux": "particle current into the volume (in at x_min minus out at x_max)",
    "energy": "local energy E_Omega",
    "power": "local power P_Omega = dE_Omega/dt",
    "field_work": "field work P_J",
    "interaction": "interaction current-force correlation P_C",
    "quantum": "quantum term P_S + P_N",
    "quantum_flux": "quantum surface term P_S",
    "quantum_nonlocal": "non-local quantum term P_N",
    "boundary_flux": "energy current through the edges P_B (inflow minus outflow)",
    "absorbed": "power removed by the absorbing layers, A_Omega",
    "quadrature_error": "error estimate of the window quadrature (sum over the power terms)",
    # /fields
    "density": "electron density n(x, t)",
    "current": "particle current J(x, t)",
    "energy_density": "energy density eps(x, t)",
    "power_density": "power density p(x, t)",
    "energy_current": "energy current j_E(x, t)",
    "field_work_density": "field work density",
    "interaction_density": "interaction power density",
    "quantum_density": "quantum power density",
    # /global
    "norm": "norm of the wavefunction (cw: surviving fraction of the worlds)",
    "absorbed_power": "power taken out by the absorbing layers",
    "total_power": "integral of the power density over all space",
    # /trajectories
    "positions": "electron positions of the stored worlds (NaN once a world is removed)",
    "velocities": "Bohmian velocities of the stored worlds",
    "energies": "local energies of the electrons of the stored worlds",
    "quantum_potentials": "quantum potentials of the electrons of the stored worlds",
    "weights": "weights of the stored worlds",
    # /model
    "U0": "static potential U0(x)",
    "gamma": "absorbing rate Gamma(x)",
    "field_shape": "spatial shape E(x)/f(t) of each [[field]] entry",
    "time_profile": "time profile f(t) of each [[field]] entry",
    # /diagnostics
    "crossings": "worlds in which identical electrons crossed",
    "discarded_samples": "samples dropped by --discard-bad-samples",
    "rank": "eigenvalues of the basis overlap S kept",
    "condition": "condition number of the basis overlap S",
}
#: The global "power" and "energy" are not the volume quantities of the same names.
GLOBAL_LONG_NAMES = {"energy": "internal energy of all the electrons",
                     "power": "power of the field over all space"}

#: NAME of an HDF5 dimension scale that is a dimension only (no coordinate values), as netCDF-4
#: writes it; h5netcdf and xarray show such a dimension without coordinates.
NOT_A_VARIABLE = "This is a netCDF dimension but not a netCDF variable."


#: Suffix of the twin of a volume quantity that counts the worlds that contributed to it.
WORLDS = "_worlds"


def quantity_of(name: str) -> str:
    """The quantity a dataset name stands for: ``energy_stderr`` and ``energy_worlds`` -> energy."""
    for suffix in ("_stderr", WORLDS):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def long_name(name: str, table: dict | None = None, prefix: str = "") -> str:
    """``long_name`` of a dataset called ``name`` (``_stderr`` and ``_worlds`` twins included);
    ``prefix`` (e.g. "window average of the ") goes before the quantity's own name."""
    base = quantity_of(name)
    text = prefix + ((table or {}).get(base) or LONG_NAMES.get(base) or base.replace("_", " "))
    if name.endswith("_stderr"):
        return f"standard error of the {text}"
    if name.endswith(WORLDS):
        return (f"number of worlds that contributed to the {text} (present in the volume, "
                "value not zero)")
    return text


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


def check_output_path(path: Path, overwrite: bool, inputs=(), key: str = "--output",
                      overwrite_flag: str = "--overwrite") -> None:
    """Refuse an output that cannot be written, before any work is done.

    Refused: an existing file without ``overwrite``; a folder; one of the run's input files
    (``inputs``: the run file, table files; even with ``overwrite``); a missing folder; a folder this
    process cannot create files in (probed by creating and removing a file, so read-only file
    systems and permissions are both caught).
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(key, f"{path} is a folder; give a file name inside it")
    for inp in inputs:
        try:
            same = Path(inp).exists() and path.exists() and os.path.samefile(path, inp)
        except OSError:
            same = False
        if same or Path(os.path.abspath(path)) == Path(os.path.abspath(inp)):
            raise ConfigError(key, f"{path} is an input of this run ({inp}); writing the result "
                              "there would destroy it: choose another file with -o")
    if path.exists() and not overwrite:
        raise ConfigError(key, f"{path} exists; pass {overwrite_flag} to replace it, or choose "
                          "another file" + (" with -o" if key == "--output" else ""))
    folder = path.parent
    if not folder.exists():
        raise ConfigError(key, f"folder {folder} does not exist; create it or choose another "
                          "file with -o")
    if not folder.is_dir():
        raise ConfigError(key, f"{folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".bohmpower-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(key, f"cannot write in folder {folder} ({exc.strerror or exc}); "
                          "choose another file with -o") from None


def _tmp_name(path: Path) -> Path:
    """A temporary name beside ``path``, unique per process (two runs never share one)."""
    return path.with_name(f"{path.name}.tmp{os.getpid()}")


@contextmanager
def _replacing(path: Path):
    """Yield a temporary name; on success rename it to ``path``, on any failure remove it (no
    partial file stays behind, and an existing ``path`` is untouched)."""
    tmp = _tmp_name(path)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


@contextmanager
def _new_result_file(path: Path):
    """Yield a new HDF5 file held in memory; on success write its image to ``path`` (temporary
    name, then rename).

    HDF5 never touches the disk itself: a full disk (or quota, or file-size limit) then fails in
    one plain ``write`` we can report, instead of inside the HDF5 library (whose failed close
    crashed the interpreter). Any failure removes the temporary file; an existing ``path`` is
    untouched. Out of space is a :class:`StorageError` naming the file.
    """
    f = h5py.File(f"{path}.inmemory{os.getpid()}", "w", driver="core", backing_store=False)
    try:
        yield f
        f.flush()
        image = f.id.get_file_image()
    finally:
        f.close()
    try:
        with _replacing(path) as tmp, open(tmp, "wb") as fh:
            fh.write(image)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        if is_out_of_space(exc):
            raise StorageError(
                f"cannot write the result file {path}: {exc.strerror or exc} ({len(image)} bytes "
                "needed); nothing partial was left. Free space (or raise the quota) and rerun"
            ) from None
        raise


def _dataset(group, name, data, units: str, dims=(), long_name_: str | None = None,
             axis: bool = False, **kw):
    """A dataset with its ``units``, ``long_name`` and one dimension scale per axis (``dims``);
    ``axis=True``: a one-dimensional dataset that becomes a dimension scale itself."""
    data = np.asarray(data)
    if np.iscomplexobj(data):
        raise TypeError(f"{group.name}/{name}: complex data; store real and imaginary parts "
                        "as two datasets")
    if not axis and len(dims) != data.ndim:
        raise ValueError(f"{group.name}/{name}: {data.ndim} axes but {len(dims)} dimension "
                         "scales")
    ds = group.create_dataset(name, data=data, **kw)
    ds.attrs["units"] = units
    ds.attrs["long_name"] = long_name_ or long_name(name)
    for i, scales in enumerate(dims):
        # an axis may carry several scales (x: /grid/x, then /x); netCDF readers take the last
        for scale in (scales if isinstance(scales, tuple) else (scales,)):
            ds.dims[i].attach_scale(scale)
    return ds


def _dimension(group, name: str, size: int):
    """A dimension without coordinate values (netCDF-4's form: an empty scale so named)."""
    ds = group.create_dataset(name, shape=(int(size),), dtype="f4")
    ds.make_scale(f"{NOT_A_VARIABLE}{int(size):10d}")
    ds.attrs["units"] = "dimensionless"
    ds.attrs["long_name"] = f"{name} index (a dimension without coordinate values)"
    return ds


def _coordinate(group, name: str, values, units: str, long_name_: str | None = None):
    """A dimension scale with values (a coordinate of that name)."""
    ds = _dataset(group, name, values, units, long_name_=long_name_, axis=True)
    ds.make_scale(name)
    return ds


def write_exact_result(path: Path, result, config, *, overwrite: bool = False,
                       path_key: str = "--output", overwrite_flag: str = "--overwrite") -> Path:
    """Write an exact run (``driver.ExactResult``, atomic units) as a SPEC.md result file
    (``path_key``/``overwrite_flag``: how a refusal names the path and the way to replace it)."""
    path = Path(path)
    check_output_path(path, overwrite, key=path_key, overwrite_flag=overwrite_flag)
    us = UnitSystem(config.units.system)
    model = result.model
    with _new_result_file(path) as f:
        _common_attrs(f, config, model, us, "exact", result.wall_time, result.samples)
        t, x = _write_axes_and_model(f, model, result.time, us)

        fg = f.create_group("fields")
        for name, data in result.fields.items():
            dim = FIELD_DIMENSIONS[name]
            _dataset(fg, name, us.from_atomic(data, dim), us.unit(dim), dims=(t, x),
                     compression="gzip", compression_opts=4, shuffle=True)

        _write_volumes(f.create_group("volumes"), model.volumes, result.volumes,
                       result.windows, us, t)
        if result.trajectory_estimates is not None:
            _write_estimates(f.create_group("trajectory_estimates"), model.volumes,
                             result.trajectory_estimates, us, t, x)
            _write_trajectories(f, result.stored_trajectories, us, t, model.n_particles)

        gg = f.create_group("global")
        for q, data in result.globals.items():
            dim = GLOBAL_DIMENSIONS[q]
            _dataset(gg, q, us.from_atomic(data, dim), us.unit(dim), dims=(t,),
                     long_name_=long_name(q, GLOBAL_LONG_NAMES))

        dg = f.create_group("diagnostics")
        _dataset(dg, "crossings", result.diagnostics.get("crossings", 0), "dimensionless")
        _dataset(dg, "discarded_samples", 0, "dimensionless")
        pn = result.diagnostics.get("pn_direct_minus_balance", {})
        pg = dg.create_group("pn_direct_minus_balance")
        for name, data in pn.items():
            _dataset(pg, name, us.from_atomic(data, "power"), us.unit("power"), dims=(t,),
                     long_name_=f"P_N computed directly minus its balance value, volume {name}")
        hg = dg.create_group("health")
        for key, val in result.diagnostics.items():
            if key.startswith("health/"):
                _dataset(hg, key.split("/", 1)[1], val, "dimensionless")
        hg.attrs["warnings"] = "\n".join(result.warnings)
    return path


def _common_attrs(f, config, model, us, method: str, wall_time: float, samples: int,
                  ranks: int = 1) -> None:
    attrs = {
        "schema": SCHEMA,
        "method": method,
        "config": config.to_toml(),
        "config_hash": config.config_hash(),
        "units_system": config.units.system,
        "ranks": int(ranks),
        "seed": config.trajectories.seed if config.trajectories else -1,
        "samples": samples,
        "wall_time": wall_time,
        "include_drive_potential": bool(model.include_drive_potential),
        "window": us.from_atomic(model.config.time.window_length, "time"),
        "n_particles": model.n_particles,
        "statistics": model.statistics,
    }
    attrs.update(provenance())
    for k, v in attrs.items():
        f.attrs[k] = v
    f.attrs["wall_time_units"] = "s"


def _write_axes_and_model(f, model, time, us):
    """The root coordinates ``time`` and ``x`` (every group below sees them), ``/grid/x`` and
    ``/model``; returns the scales of time and of x (``/grid/x`` and ``/x``: both are attached to
    every x axis, ``/x`` last, the one netCDF readers use)."""
    t = _coordinate(f, "time", us.from_atomic(time, "time"), us.unit("time"))
    grid_x = us.from_atomic(model.grid.x, "length")
    g = f.create_group("grid")
    gx = _coordinate(g, "x", grid_x, us.unit("length"), long_name_="grid points")
    x = (gx, _coordinate(f, "x", grid_x, us.unit("length")))
    m = f.create_group("model")
    n_f = len(model.drives)
    fields = _dimension(m, "field", n_f)
    _dataset(m, "U0", us.from_atomic(model.u0, "energy"), us.unit("energy"), dims=(x,))
    # E(x)/f(t) = force_shape / q, q = -1 in atomic units.
    shapes = np.array([-d.force_shape for d in model.drives]).reshape(n_f, model.grid.n_x)
    _dataset(m, "field_shape", us.from_atomic(shapes, "electric_field"), us.unit("electric_field"),
             dims=(fields, x))
    # q phi(x)/f(t) of each drive, the model's own potential shape (bohmpower plot draws U0 + q phi)
    pots = np.array([d.potential_shape for d in model.drives]).reshape(n_f, model.grid.n_x)
    _dataset(m, "drive_potential", us.from_atomic(pots, "energy"), us.unit("energy"),
             dims=(fields, x))
    profiles = np.array([d.profile(time) for d in model.drives]).reshape(n_f, len(time))
    _dataset(m, "time_profile", profiles, "dimensionless", dims=(fields, t))
    _dataset(m, "gamma", us.from_atomic(model.gamma, "energy"), us.unit("energy"), dims=(x,))
    return t, x


def _write_trajectories(f, stored: dict, us, t, n_particles: int) -> None:
    """``/trajectories``: (sample, time, electron) arrays; weights (sample, time)."""
    tg = f.create_group("trajectories")
    n_store = next(iter(stored.values())).shape[0] if stored else 0
    sample = _dimension(tg, "sample", n_store)
    electron = _dimension(tg, "electron", n_particles)
    for name, data in stored.items():
        dim = TRAJECTORY_DIMENSIONS[name]
        dims = (sample, t, electron)[: np.ndim(data)]
        _dataset(tg, name, us.from_atomic(data, dim), us.unit(dim), dims=dims)


def write_cw_result(path: Path, result, config, *, overwrite: bool = False,
                    path_key: str = "--output", overwrite_flag: str = "--overwrite") -> Path:
    """Write a conditional-wavefunction run (``driver.CWResult``, atomic units) per SPEC.md.

    Volumes hold the ensemble estimates with ``_stderr`` twins (power and its terms as window
    averages); /global comes from the whole-cell volume of the estimators (norm = surviving
    fraction of the worlds); /fields hold kernel-density profiles (bandwidth in the attributes).
    """
    from bohmpower.power.recorder import GLOBAL_VOLUME

    path = Path(path)
    check_output_path(path, overwrite, key=path_key, overwrite_flag=overwrite_flag)
    us = UnitSystem(config.units.system)
    model = result.model
    est = result.estimates
    with _new_result_file(path) as f:
        _common_attrs(f, config, model, us, "cw", result.wall_time, result.samples,
                      getattr(result, "ranks", 1))
        f.attrs["load_imbalance"] = float(getattr(result, "load_imbalance", 1.0))
        f.attrs["exchange"] = bool(result.exchange)
        f.attrs["scheme"] = str(getattr(result, "scheme", "zeroth_order"))
        t, x = _write_axes_and_model(f, model, result.time, us)
        vg = f.create_group("volumes")
        for vol in model.volumes:
            d = est["volumes"][vol.name]
            grp = _volume_group(vg, vol, us)
            _write_series(grp, {q: v for q, v in d.items() if not q.startswith("window/")}, us, t)
            _write_window(grp, {q.split("/", 1)[1]: v for q, v in d.items()
                                if q.startswith("window/")}, us)
        g = est["volumes"][GLOBAL_VOLUME]
        gg = f.create_group("global")
        n = model.n_particles
        for name, key, dim, scale in (("norm", "particles", "dimensionless", 1.0 / n),
                                      ("energy", "energy", "energy", 1.0),
                                      ("power", "field_work", "power", 1.0),
                                      ("absorbed_power", "absorbed", "power", 1.0)):
            for suffix in ("", "_stderr"):
                _dataset(gg, name + suffix, us.from_atomic(g[key + suffix] * scale, dim),
                         us.unit(dim), dims=(t,),
                         long_name_=long_name(name + suffix, GLOBAL_LONG_NAMES))
        if est.get("fields"):
            _write_profiles(f.create_group("fields"), est, us, t, x)
        if "blocks" in est:
            _write_blocks(f.create_group("estimate_blocks"), est["blocks"], us, t,
                          _window_starts(est), GLOBAL_VOLUME)
        _write_trajectories(f, result.stored_trajectories, us, t, model.n_particles)
        dg = f.create_group("diagnostics")
        _dataset(dg, "crossings", result.crossings, "dimensionless")
        _dataset(dg, "discarded_samples", len(result.discarded), "dimensionless")
        dg.attrs["discarded_sample_ids"] = np.asarray(result.discarded, dtype=np.int64)
        dg.attrs["warnings"] = "\n".join(result.warnings)
        basis = getattr(result, "basis_diagnostics", None)
        if basis:
            # interacting scheme: one value per step of the shared basis (the same in every block)
            bg = dg.create_group("basis")
            bg.attrs["dt"] = float(us.from_atomic(model.config.time.dt, "time"))
            step = _dimension(bg, "step", len(next(iter(basis.values()))))
            for name, values in basis.items():
                values = np.asarray(values, dtype=float)
                label = {"norm": "norm of the reconstructed wavefunction",
                         "energy": "energy <H> of the reconstructed wavefunction"}.get(
                             name, LONG_NAMES.get(name, name)) + ", per step"
                if name == "energy":  # <H> of the reconstructed Psi
                    _dataset(bg, name, us.from_atomic(values, "energy"), us.unit("energy"),
                             dims=(step,), long_name_=label)
                else:
                    _dataset(bg, name, values, "dimensionless", dims=(step,), long_name_=label)
    return path


def write_open_result(path: Path, result, config, *, overwrite: bool = False,
                      path_key: str = "--output", overwrite_flag: str = "--overwrite") -> Path:
    """Write an open-system run (``devices.engine.OpenResult``, atomic units): method "open",
    ``/steady_state`` (docs/result-file.md) and ``/model``; currents in electrons per unit time."""
    path = Path(path)
    check_output_path(path, overwrite, key=path_key, overwrite_flag=overwrite_flag)
    us = UnitSystem(config.units.system)
    model = result.model
    n_w = int(result.crossings.shape[0])
    with _new_result_file(path) as f:
        _common_attrs(f, config, model, us, "open", result.wall_time, n_w,
                      getattr(result, "ranks", 1))
        f.attrs["n_particles"] = int(result.max_present)  # the largest N a world held
        t, _ = _write_axes_and_model(f, model, result.frame_times, us)
        sg = f.create_group("steady_state")
        for name, value, dim in (("warm_up", result.warm_up, "time"),
                                 ("averaging_time", result.averaging_time, "time"),
                                 ("steady_state_time", result.steady_state_time, "time"),
                                 ("detected_steady_state_time",
                                  getattr(result, "detected_steady_state_time", float("nan")),
                                  "time"),
                                 ("bias", result.landauer["bias"], "energy"),
                                 ("mu_left", result.landauer["mu_left"], "energy"),
                                 ("mu_right", result.landauer["mu_right"], "energy"),
                                 ("kT", result.landauer["kt"], "energy")):
            sg.attrs[name] = float(us.from_atomic(value, dim))
            sg.attrs[name + "_units"] = us.unit(dim)
        sg.attrs["degeneracy"] = int(result.degeneracy)
        drift = getattr(result, "drift", {}) or {}
        for key in ("relative", "stderr", "z"):  # steady.window_drift of N(t), dimensionless
            sg.attrs["electrons_drift_" + key] = float(drift.get(key, float("nan")))
        sg.attrs["electrons_lost"] = int(result.lost)
        cur = result.current()
        surf = _coordinate(sg, "surface", us.from_atomic(result.surfaces, "length"),
                           us.unit("length"), long_name_="where the current is counted")
        batch = _dimension(sg, "batch", result.n_batches)
        rate = us.unit("frequency")
        for name, data, dims, label in (
            ("current", cur["mean"], (surf,), "steady-state particle current, left to right"),
            ("current_stderr", cur["standard_error"], (surf,),
             "standard error of current over the independent worlds"),
            ("current_batch_stderr", cur["batch_standard_error"], (surf,),
             "standard error of current from the batch means in time"),
            ("current_batches", cur["batches"], (surf, batch), "current in each time batch"),
            ("exit_current", cur["exit_mean"], (),
             "transmitted electrons per unit time, left-to-right minus right-to-left"),
            ("exit_current_stderr", cur["exit_standard_error"], (),
             "standard error of exit_current over the worlds"),
            ("landauer_current", result.landauer["current"], (),
             "Landauer current (g/h) int T (f_L - f_R) dE on the same potential"),
            ("model_current", result.landauer["model_current"], (),
             "expectation of the injection model (packet-averaged transmission per cell)"),
            ("grid_landauer_current", result.landauer["grid_current"], (),
             "Landauer current of the potential's grid samples"),
        ):
            _dataset(sg, name, us.from_atomic(np.asarray(data, dtype=float), "frequency"), rate,
                     dims=dims, long_name_=label)
        side = _dimension(sg, "side", 2)
        sg.attrs["side_names"] = "left, right"
        _dataset(sg, "exits", result.exits.sum(axis=0), "dimensionless", dims=(side, side),
                 long_name_="electrons that left in the averaging window, [origin side, exit side]")
        _dataset(sg, "injected", result.injected.sum(axis=0), "dimensionless", dims=(side,),
                 long_name_="electrons injected in the averaging window, per reservoir")
        _dataset(sg, "electrons", result.electrons.mean(axis=1), "dimensionless", dims=(t,),
                 long_name_="mean number of electrons in a world, N(t)")
        _write_noise(sg, result, us)
        e = _coordinate(sg, "energy", us.from_atomic(result.landauer["energies"], "energy"),
                        us.unit("energy"), long_name_="energies of the transmission curve")
        _dataset(sg, "transmission", result.landauer["transmission"], "dimensionless", dims=(e,),
                 long_name_="transfer-matrix transmission T(E) of the potential")
        if getattr(result, "power", None):
            _write_steady_power(sg.create_group("volumes"), result, us)
        tr = result.transient() if hasattr(result, "transient") else {}
        if tr:
            _write_transient(f.create_group("transient"), result, tr, us, t)
        dg = f.create_group("diagnostics")
        dg.attrs["warnings"] = "\n".join(result.warnings)
    return path


def _write_transient(tg, result, tr: dict, us, t) -> None:
    """/transient (a bias switched on): currents per frame interval and the power record from
    t = 0 (``OpenResult.transient``, docs/result-file.md)."""
    from bohmpower.devices.engine import power_volumes

    tg.attrs["description"] = ("the run from t = 0: currents in each interval between frames, the "
                               "Ramo-Shockley current of the electrodes, the displacement current "
                               "and E_Omega, P_Omega and its terms per volume (docs/devices.md)")
    interval = _coordinate(tg, "interval", us.from_atomic(tr["t_start"], "time"), us.unit("time"),
                           long_name_="start of the interval between frames")
    _dataset(tg, "interval_end", us.from_atomic(tr["t_end"], "time"), us.unit("time"),
             dims=(interval,), long_name_="end of the interval between frames")
    _dataset(tg, "bias", us.from_atomic(tr["bias"], "energy"), us.unit("energy"), dims=(interval,),
             long_name_="mu_L - mu_R at the middle of the interval")
    surf = _coordinate(tg, "surface", us.from_atomic(result.surfaces, "length"), us.unit("length"),
                       long_name_="where the current is counted")
    rate = us.unit("frequency")
    for name, dims, label in (
        ("current", (surf, interval), "particle current through the surface, left to right"),
        ("ramo_current", (interval,), "current the electrons induce in the electrodes "
         "(Ramo-Shockley), sum_k w(X_k) v_k"),
        ("displacement_current", (surf, interval), "ramo_current - current: what crosses the "
         "surface as a changing field"),
    ):
        for key, text in ((name, label), (name + "_stderr", f"standard error of {name} over the "
                                          "independent worlds")):
            _dataset(tg, key, us.from_atomic(np.asarray(tr[key], dtype=float), "frequency"), rate,
                     dims=dims, long_name_=text)
    if "power" in tr:
        _write_estimates(tg, power_volumes(result.model, result.injection), tr["power"], us, t,
                         None)


def _write_noise(sg, result, us) -> None:
    """Shot noise (``OpenResult.noise``, ``devices.noise``): attrs on /steady_state, the transmitted
    counts per world and counted attempt period, and the cells' measured and model transmissions."""
    from bohmpower.devices.injection import LEFT, RIGHT

    n = result.noise()
    for key, name in (("fano", "fano_factor"), ("fano_stderr", "fano_factor_stderr"),
                      ("fano_if_transmitted", "fano_if_transmitted"), ("fano_model", "fano_model"),
                      ("fano_quantum", "fano_quantum"), ("mean_count", "noise_mean_count"),
                      ("mean_count_model", "noise_mean_count_model")):
        sg.attrs[name] = float(n[key])
    sg.attrs["noise_periods"] = int(n["periods"])
    sg.attrs["noise_undecided"] = int(n["undecided"])
    sg.attrs["attempt_period"] = float(us.from_atomic(n["period"], "time"))
    sg.attrs["attempt_period_units"] = us.unit("time")
    k = n["periods"]
    fates = result.fates
    if fates is None:
        return
    world = _dimension(sg, "world", fates.shape[0])
    period = _dimension(sg, "period", k)
    counts = fates[:, :k, :, LEFT, RIGHT].sum(axis=2) - fates[:, :k, :, RIGHT, LEFT].sum(axis=2)
    _dataset(sg, "transmitted_counts", counts.astype(np.int64), "dimensionless",
             dims=(world, period), long_name_="electrons injected in each counted attempt period "
             "that were transmitted, left-to-right minus right-to-left")
    cell = _dimension(sg, "cell", fates.shape[2])
    side = sg["side"]
    decided = fates[:, :k].sum(axis=(0, 1))  # (cell, origin, exit)
    with np.errstate(invalid="ignore", divide="ignore"):
        measured = np.stack([decided[:, LEFT, RIGHT] / decided[:, LEFT].sum(axis=1),
                             decided[:, RIGHT, LEFT] / decided[:, RIGHT].sum(axis=1)])
    _dataset(sg, "cell_transmission", measured, "dimensionless", dims=(side, cell),
             long_name_="fraction of each cell's decided electrons of the counted periods that "
             "were transmitted")
    _dataset(sg, "cell_transmission_model", np.stack(result.landauer["packet_transmission"]),
             "dimensionless", dims=(side, cell),
             long_name_="packet-averaged transmission of each cell (injection model)")


def _write_steady_power(parent, result, us) -> None:
    """/steady_state/volumes/<name>: steady-state time averages of E_Omega and the power terms."""
    sp = result.steady_power()
    parent.attrs["averaging_time"] = float(us.from_atomic(sp["averaging_time"], "time"))
    parent.attrs["averaging_time_units"] = us.unit("time")
    for i, name in enumerate(sp["volumes"]):
        grp = parent.create_group(name)
        for key in ("x_min", "x_max"):
            grp.attrs[key] = us.from_atomic(float(sp[key][i]), "length")
        grp.attrs["smoothing"] = 0.0 if name == result.DEVICE_VOLUME else next(
            float(us.from_atomic(v.smoothing, "length")) for v in result.model.volumes
            if v.name == name)
        grp.attrs["units"] = us.unit("length")
        batch = _dimension(grp, "batch", result.n_batches)
        for q in ("energy",) + result.POWER_TERMS:
            dim = "frequency" if q == "particle_flux" else ("energy" if q == "energy" else "power")
            unit = us.unit(dim)
            label = "steady-state time average of the " + long_name(q)
            # E_Omega is `local_energy` here: `energy` is the transmission's axis in /steady_state
            n = "local_energy" if q == "energy" else q
            _dataset(grp, n, us.from_atomic(float(sp[q][i]), dim), unit, long_name_=label)
            _dataset(grp, n + "_stderr", us.from_atomic(float(sp[q + "_stderr"][i]), dim), unit,
                     long_name_=f"standard error of {n} over the independent worlds")
            _dataset(grp, n + "_batch_stderr",
                     us.from_atomic(float(sp[q + "_batch_stderr"][i]), dim), unit,
                     long_name_=f"standard error of {n} from the batch means in time")
            _dataset(grp, n + "_batches", us.from_atomic(sp[q + "_batches"][i], dim), unit,
                     dims=(batch,), long_name_=f"{n} in each time batch")


def _window_starts(est: dict) -> np.ndarray | None:
    """The window start times of an estimator result (the same for every volume), or None."""
    for d in est["volumes"].values():
        if "window/t_start" in d:
            return np.asarray(d["window/t_start"])
    return None


def _write_blocks(bg, blocks: dict, us, t, window_starts, skip: str = "") -> None:
    """Block means (block, time) or, under ``.../window/``, (block, window)."""
    bg.attrs["description"] = ("means of each fixed block of sample ids, in id order: the "
                               "correlation of the estimates (compare's RMS bound)")
    block = None
    for key, values in blocks.items():
        if skip and f"/{skip}/" in key:
            continue
        if block is None:
            block = _dimension(bg, "block", np.shape(values)[0])
        where, q = key.rsplit("/", 1)
        grp = bg.require_group(where)
        if where.endswith("window"):
            axis = grp["window"] if "window" in grp else _coordinate(
                grp, "window", us.from_atomic(window_starts, "time"), us.unit("time"))
        else:
            axis = t
        _dataset(grp, q, us.from_atomic(values, VOLUME_DIMENSIONS[q]),
                 us.unit(VOLUME_DIMENSIONS[q]), dims=(block, axis),
                 long_name_="block means of the " + long_name(q))


def _volume_group(parent, vol, us):
    grp = parent.create_group(vol.name)
    for key, val in (("x_min", vol.x_min), ("x_max", vol.x_max), ("smoothing", vol.smoothing)):
        grp.attrs[key] = us.from_atomic(val, "length")
    grp.attrs["units"] = us.unit("length")
    return grp


def _write_series(grp, data: dict, us, scale, prefix: str = ""):
    """Datasets named by quantity along ``scale`` (``_stderr`` twins share the quantity's
    dimension)."""
    for q, values in data.items():
        if q == "t_start" or q.endswith("/t_start"):
            continue
        if q.endswith(WORLDS):  # a count of worlds: an integer, in no unit system
            _dataset(grp, q, np.asarray(values, dtype=np.int64), "1", dims=(scale,),
                     long_name_=long_name(q, prefix=prefix))
            continue
        base = quantity_of(q)
        dim = VOLUME_DIMENSIONS[base]
        _dataset(grp, q, us.from_atomic(values, dim), us.unit(dim), dims=(scale,),
                 long_name_=long_name(q, prefix=prefix))


def _window_group(parent, t_start, us):
    """A ``window/`` group: its coordinate ``window`` (the window start times, a dimension scale)
    and ``t_start`` (the same times, the name the readers use)."""
    wg = parent.create_group("window")
    starts = us.from_atomic(t_start, "time")
    w = _coordinate(wg, "window", starts, us.unit("time"))
    _dataset(wg, "t_start", starts, us.unit("time"), dims=(w,))
    return wg, w


def _write_window(grp, window: dict, us):
    """``window/t_start`` and ``window/<quantity>`` averages over [t, t + window]."""
    if not window:
        return
    wg, w = _window_group(grp, window["t_start"], us)
    _write_series(wg, {q: v for q, v in window.items() if q != "t_start"}, us, w,
                  prefix="window average of the ")


def _write_volumes(parent, volumes, values: dict, windows: dict, us, t):
    for vol in volumes:
        grp = _volume_group(parent, vol, us)
        _write_series(grp, values[vol.name], us, t)
        _write_window(grp, windows.get(vol.name, {}), us)


def _write_estimates(parent, volumes, est: dict, us, t, x):
    """Ensemble estimates (``power.estimators`` results) under ``parent``, SPEC.md names."""
    parent.attrs["samples"] = est["n_samples"]
    vg = parent.create_group("volumes")
    for vol in volumes:
        d = est["volumes"][vol.name]
        grp = _volume_group(vg, vol, us)
        _write_series(grp, {q: v for q, v in d.items() if not q.startswith("window/")}, us, t)
        window = {q.split("/", 1)[1]: v for q, v in d.items() if q.startswith("window/")}
        _write_window(grp, window, us)
    blocks = est.get("blocks")
    if blocks:
        _write_blocks(parent.create_group("blocks"), blocks, us, t, _window_starts(est))
    fields = est.get("fields")
    if fields:
        _write_profiles(parent.create_group("fields"), est, us, t, x)


def _write_profiles(fg, est: dict, us, t, x) -> None:
    """Kernel-density profiles of an ensemble (n_t, n_x) and their window averages (n_w, n_x)."""
    fields = est["fields"]
    fg.attrs["profile_bandwidth"] = us.from_atomic(est["profile_bandwidth"], "length")
    fg.attrs["profile_bandwidth_units"] = us.unit("length")
    wg, w = _window_group(fg, fields["window/t_start"], us)
    for q, values in fields.items():
        if q == "window/t_start":
            continue
        window = q.startswith("window/")
        group, name, scale = (wg, q.split("/", 1)[1], w) if window else (fg, q, t)
        base = name[: -len("_stderr")] if name.endswith("_stderr") else name
        dim = FIELD_DIMENSIONS[base]
        _dataset(group, name, us.from_atomic(values, dim), us.unit(dim), dims=(scale, x),
                 long_name_=("window average of the " if window else "") + long_name(name))


def result_method(path: Path) -> str:
    """The ``method`` attribute of a result file ("exact", "conditional_wavefunctions", "open")."""
    with open_result(path) as f:
        return str(f.attrs.get("method", ""))


def open_result(path: Path) -> h5py.File:
    """Open a result file read-only, refusing anything that is not one (ResultFileError)."""
    path = Path(path)
    if not path.exists():
        raise ResultFileError(f"{path}: no such file")
    if path.is_dir():
        raise ResultFileError(f"{path}: is a folder, not a result file")
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise ResultFileError(f"{path}: not an HDF5 file ({exc})") from None
    try:
        schema = f.attrs.get("schema")
    except (OSError, KeyError, ValueError, TypeError) as exc:
        f.close()
        raise ResultFileError(f"{path}: its root attributes cannot be read ({exc})") from None
    if isinstance(schema, bytes):
        schema = schema.decode(errors="replace")
    if schema != SCHEMA:
        f.close()
        raise ResultFileError(f"{path}: not a bohmpower result file (schema attribute is "
                              f"{schema!r}, expected {SCHEMA!r})")
    return f


@contextmanager
def result_reader(path: Path):
    """The one way result files are read: ``with result_reader(p) as f: ...``.

    Any failure while reading (a missing group, dataset or attribute, a wrong dtype or shape, a
    truncated file) becomes a ResultFileError naming the file and what is missing.
    """
    f = open_result(path)
    try:
        yield f
    except ResultFileError:
        raise
    except KeyError as exc:
        raise ResultFileError(f"{path}: incomplete bohmpower result file: {_missing(exc)}") from None
    except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise ResultFileError(f"{path}: cannot be read as a bohmpower result file "
                              f"({type(exc).__name__}: {exc})") from None
    finally:
        f.close()


def _missing(exc: KeyError) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    return f"missing {text}" if "'" not in text else f"missing object or attribute ({text})"


def describe_result(path: Path) -> str:
    """What a result file holds: method, sizes, units, volumes, timings, provenance."""
    lines = []
    with result_reader(path) as f:
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
        if a["method"] == "open":
            sg = f["steady_state"]
            ru = sg["current"].attrs["units"]
            lines.append(f"  open system: bias {sg.attrs['bias']:.6g} {sg.attrs['bias_units']}, "
                         f"kT {sg.attrs['kT']:.6g} {sg.attrs['kT_units']}, averages over "
                         f"{sg.attrs['averaging_time']:.6g} {sg.attrs['averaging_time_units']} "
                         f"after a warm-up of {sg.attrs['warm_up']:.6g} "
                         f"{sg.attrs.get('warm_up_units', sg.attrs['averaging_time_units'])}")
            for x, j, se in zip(sg["surface"][()], sg["current"][()], sg["current_stderr"][()],
                                strict=True):
                lines.append(f"    current at {x:.6g} {sg['surface'].attrs['units']}: {j:.6g} +- "
                             f"{se:.3g} {ru}")
            lines.append(f"    Landauer current {float(sg['landauer_current'][()]):.6g} {ru} "
                         f"(injection model {float(sg['model_current'][()]):.6g})")
            if "transient" in f:
                tg = f["transient"]
                lines.append(f"    transient from t = 0 in /transient: {tg['interval'].shape[0]} "
                             "intervals of currents (particle, Ramo-Shockley, displacement) and "
                             "the power per volume (bohmpower plot draws them)")
            if int(sg.attrs.get("noise_periods", 0)):
                lines.append(f"    shot noise: Fano factor {sg.attrs['fano_factor']:.4g} +- "
                             f"{sg.attrs['fano_factor_stderr']:.2g} over "
                             f"{int(sg.attrs['noise_periods'])} attempt periods (injection model "
                             f"{sg.attrs['fano_model']:.4g}, two-terminal formula "
                             f"{sg.attrs['fano_quantum']:.4g})")
            if "volumes" in sg:
                lines.append("    steady-state averages per volume (+- standard error over worlds):")
                for name, vg in sg["volumes"].items():
                    pu = vg["power"].attrs["units"]

                    def pm(q, vg=vg):
                        return f"{float(vg[q][()]):.4g} +- {float(vg[q + '_stderr'][()]):.2g}"

                    lines.append(f"      {name}: [{vg.attrs['x_min']:.6g}, {vg.attrs['x_max']:.6g}] "
                                 f"{vg.attrs['units']}; E {pm('local_energy')} "
                                 f"{vg['local_energy'].attrs['units']}; P_Omega {pm('power')}, "
                                 f"field work {pm('field_work')}, quantum {pm('quantum')}, "
                                 f"boundary flux {pm('boundary_flux')} {pu}")
            return "\n".join(lines)
        lines.append("  volumes:")
        for name, grp in f["volumes"].items():
            e = grp["energy"]
            lines.append(f"    {name}: [{grp.attrs['x_min']:.6g}, {grp.attrs['x_max']:.6g}] "
                         f"{grp.attrs['units']}, smoothing {grp.attrs['smoothing']:.3g}; "
                         f"E(t_end) = {e[-1]:.6g} {e.attrs['units']}")
        g = f["global"]
        lines.append(f"  global: norm {g['norm'][0]:.6g} -> {g['norm'][-1]:.6g}; internal energy "
                     f"{g['energy'][0]:.8g} -> {g['energy'][-1]:.8g} {g['energy'].attrs['units']}")
        groups: dict = {}
        for name in _walk(f):
            top = name.split("/", 1)[0] if "/" in name else "/"
            groups[top] = groups.get(top, 0) + 1
        lines.append("  datasets per group: " + ", ".join(f"{g} {n}" for g, n in
                                                       sorted(groups.items())))
    return "\n".join(lines)


def _walk(f) -> list[str]:
    names = []
    f.visititems(lambda n, o: names.append(n)
                 if isinstance(o, h5py.Dataset) and not _is_axis(o) else None)
    return names


def _is_axis(ds) -> bool:
    """A dimension scale written as an axis (``window``, ``sample``, ...), not a quantity; older
    files made ``t_start`` itself the scale, and it stays a quantity."""
    return ds.attrs.get("CLASS") == b"DIMENSION_SCALE" and ds.name.rsplit("/", 1)[-1] != "t_start"


def _read_group_arrays(grp) -> dict:
    return {k: grp[k][()] for k in grp if isinstance(grp[k], h5py.Dataset)
            and not _is_axis(grp[k])}


def _read_volumes(grp) -> dict:
    out = {}
    for name, vg in grp.items():
        out[name] = {
            "attrs": {k: vg.attrs[k] for k in ("x_min", "x_max", "smoothing") if k in vg.attrs},
            "data": _read_group_arrays(vg),
            "window": _read_group_arrays(vg["window"]) if "window" in vg else {},
            "units": {k: vg[k].attrs.get("units", "") for k in vg
                      if isinstance(vg[k], h5py.Dataset) and not _is_axis(vg[k])},
        }
    return out


def _read_blocks(grp) -> dict:
    """Block means keyed like the estimators: "volumes/<name>/<q>", ".../window/<q>"."""
    out = {}
    grp.visititems(lambda n, o: out.__setitem__(n, o[()])
                   if isinstance(o, h5py.Dataset) and not _is_axis(o) else None)
    return out


def read_result(path: Path, fields: bool = False) -> dict:
    """Read a result file into plain arrays (in the file's units).

    Returns a dict with ``attrs``, ``time``, ``x``, ``units`` (of time and x), ``volumes`` and, when
    present, ``trajectory_estimates`` (the same layout), ``global`` and, with ``fields=True``,
    ``fields`` (n_t, n_x) arrays and ``trajectories``.
    """
    with result_reader(path) as f:
        out = {
            "path": str(path),
            "attrs": {k: f.attrs[k] for k in f.attrs},
            "time": f["time"][()],
            "x": f["grid/x"][()],
            "units": {"time": f["time"].attrs["units"], "x": f["grid/x"].attrs["units"]},
            "volumes": _read_volumes(f["volumes"]),
            "global": _read_group_arrays(f["global"]) if "global" in f else {},
            "global_units": ({k: f["global"][k].attrs["units"] for k in f["global"]}
                             if "global" in f else {}),
        }
        if "trajectory_estimates/volumes" in f:
            out["trajectory_estimates"] = _read_volumes(f["trajectory_estimates/volumes"])
        for where in ("trajectory_estimates/blocks", "estimate_blocks"):
            if where in f:
                out["blocks"] = _read_blocks(f[where])
        if fields:
            out["fields"] = _read_group_arrays(f["fields"])
            out["field_units"] = {k: f["fields"][k].attrs["units"] for k in f["fields"]
                                  if isinstance(f["fields"][k], h5py.Dataset)
                                  and not _is_axis(f["fields"][k])}
            if "fields/window" in f:
                out["fields_window"] = _read_group_arrays(f["fields/window"])
            if "model/U0" in f:
                out["U0"] = f["model/U0"][()]
                out["U0_units"] = f["model/U0"].attrs["units"]
            if "model/drive_potential" in f and "model/time_profile" in f:
                out["drive_potential"] = f["model/drive_potential"][()]
                out["time_profile"] = f["model/time_profile"][()]
            if "trajectories" in f:
                out["trajectories"] = _read_group_arrays(f["trajectories"])
    _require_parts(path, out, fields)
    return out


#: Datasets every reader of a result file relies on (SPEC.md "Result file").
_REQUIRED_VOLUME = ("energy",)
_REQUIRED_FIELDS = ("density", "energy_density", "power_density")  # or window/power_density


def _require_parts(path, out: dict, fields: bool) -> None:
    """Refuse a result whose structure lacks what the readers use, naming what is missing."""
    missing = []
    for where in ("volumes", "trajectory_estimates"):
        for name, vol in out.get(where, {}).items():
            prefix = "volumes" if where == "volumes" else "trajectory_estimates/volumes"
            missing += [f"/{prefix}/{name}/{q}" for q in _REQUIRED_VOLUME if q not in vol["data"]]
            if vol["window"] and "t_start" not in vol["window"]:
                missing.append(f"/{prefix}/{name}/window/t_start")
    if fields:
        have = set(out["fields"]) | ({"power_density"} if "power_density" in
                                      out.get("fields_window", {}) else set())
        missing += [f"/fields/{q}" for q in _REQUIRED_FIELDS if q not in have]
    if missing:
        raise ResultFileError(f"{path}: incomplete bohmpower result file: missing "
                              + ", ".join(missing))
