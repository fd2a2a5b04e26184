"""``bohmpower sweep RUN.toml --bias a:b:n``: one open-system run per bias point (docs/devices.md).

Each point is the run file with the bias of its ``linear_drop`` field set to the point's value (one
such field is required), written to ``<stem>.bias<value>.h5`` in the output directory. A point whose
result file exists is not run again (so an interrupted sweep resumes where it stopped), and its
current is read back from the file. The sweep prints I(V) beside the Landauer current and draws
``<stem>.iv.png`` (``bohmpower plot DIR`` draws it again: ``plot.plot_sweep``). Points run one after the
other (each one's worlds over the ranks, as in ``bohmpower run``).

``read_sweep`` reads a sweep folder back (every point's currents and steady-state power per volume);
``landauer_curve`` is the Landauer current of the same device on a fine grid of biases, the line the
points are drawn against.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np

from bohmpower.config import parse_config
from bohmpower.errors import ConfigError

__all__ = ["landauer_curve", "parse_bias_range", "point_config", "read_sweep", "sweep"]


def parse_bias_range(text: str) -> np.ndarray:
    """``a:b:n`` -> n biases from a to b inclusive (n >= 1; n = 1 needs a == b)."""
    parts = text.split(":")
    try:
        a, b, n = float(parts[0]), float(parts[1]), int(parts[2])
        if len(parts) != 3:
            raise ValueError
    except (ValueError, IndexError):
        raise ConfigError("--bias", f"expected start:stop:count (e.g. 0:0.03:4), got {text!r}") from None
    if n < 1 or (n == 1 and a != b) or not (np.isfinite(a) and np.isfinite(b)):
        raise ConfigError("--bias", f"count must be >= 1 (1 only with start == stop), got {text!r}")
    return np.linspace(a, b, n)


def point_config(config, bias: float):
    """The run at one bias (in the run file's energy unit): its one linear_drop's bias replaced."""
    data = tomllib.loads(config.to_toml())
    drops = [f for f in data.get("field", []) if f.get("kind") == "linear_drop"]
    if len(drops) != 1:
        raise ConfigError("field", f"a sweep sets the bias of one linear_drop field; the run file "
                          f"has {len(drops)}")
    drops[0]["bias"] = float(bias)
    return parse_config(data, config.base_dir)


def point_path(directory: Path, stem: str, bias: float) -> Path:
    return Path(directory) / f"{stem}.bias{bias:.6g}.h5"


#: Steady-state quantities of a volume that read_sweep collects (with their _stderr).
SWEEP_POWER = ("local_energy", "power", "field_work", "interaction", "quantum", "boundary_flux",
               "absorbed")


def read_sweep(directory: Path) -> dict:
    """Every point of the sweep in ``directory`` (its ``<stem>.bias<value>.h5`` files), by bias.

    Returns
    -------
    dict: ``stem``; ``bias`` (P,); ``exit_current``, ``exit_current_stderr``, ``landauer_current``,
    ``model_current`` (P,); ``surface`` (S,) and ``current``, ``current_stderr`` (P, S);
    ``volumes``: name -> {``x_min``, ``x_max``, and per quantity of :data:`SWEEP_POWER` its values
    and ``<q>_stderr`` (P,)}; ``units`` (bias, current, length, power, energy); ``config`` (the first
    point's resolved run file, TOML) and ``base_dir``. Everything in the run file's units.
    """
    import h5py

    directory = Path(directory)
    files = sorted(directory.glob("*.bias*.h5"))
    if not directory.is_dir() or not files:
        raise ConfigError(str(directory), "holds no sweep points (<stem>.bias<value>.h5): run "
                          "`bohmpower sweep RUN.toml --bias a:b:n -o DIR` first")
    stems = sorted({f.name.split(".bias")[0] for f in files})
    if len(stems) > 1:
        raise ConfigError(str(directory), f"holds the points of {len(stems)} sweeps "
                          f"({', '.join(stems)}): give each sweep its own folder (-o DIR)")
    rows = []
    for path in files:
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise ConfigError(str(path), f"not a readable result file ({exc}); remove it and run "
                              "the sweep again (that point is then recomputed)") from None
        with f:
            if f.attrs.get("method") != "open" or "steady_state" not in f:
                raise ConfigError(str(path), "not an open-system result (no /steady_state)")
            sg = f["steady_state"]
            row = {"bias": float(sg.attrs["bias"]), "config": str(f.attrs["config"]),
                   "units": {"bias": str(sg.attrs["bias_units"]),
                             "current": str(sg["current"].attrs["units"]),
                             "length": str(sg["surface"].attrs["units"])},
                   "surface": np.asarray(sg["surface"][()], dtype=float),
                   "current": np.asarray(sg["current"][()], dtype=float),
                   "current_stderr": np.asarray(sg["current_stderr"][()], dtype=float)}
            for k in ("exit_current", "exit_current_stderr", "landauer_current", "model_current"):
                row[k] = float(sg[k][()])
            vols = {}
            if "volumes" in sg:
                for name, g in sg["volumes"].items():
                    v = {"x_min": float(g.attrs["x_min"]), "x_max": float(g.attrs["x_max"])}
                    for q in SWEEP_POWER:
                        v[q] = float(g[q][()])
                        v[q + "_stderr"] = float(g[q + "_stderr"][()])
                    vols[name] = v
                    row["units"]["power"] = str(g["power"].attrs["units"])
                    row["units"]["energy"] = str(g["local_energy"].attrs["units"])
            row["volumes"] = vols
        rows.append(row)
    rows.sort(key=lambda r: r["bias"])
    out = {"stem": stems[0], "bias": np.array([r["bias"] for r in rows]),
           "units": rows[0]["units"], "config": rows[0]["config"], "base_dir": directory,
           "surface": rows[0]["surface"]}
    for k in ("exit_current", "exit_current_stderr", "landauer_current", "model_current"):
        out[k] = np.array([r[k] for r in rows])
    for k in ("current", "current_stderr"):
        out[k] = np.stack([r[k] for r in rows])
    names = [n for n in rows[0]["volumes"] if all(n in r["volumes"] for r in rows)]
    out["volumes"] = {n: {"x_min": rows[0]["volumes"][n]["x_min"],
                          "x_max": rows[0]["volumes"][n]["x_max"],
                          **{q: np.array([r["volumes"][n][q] for r in rows])
                             for q in SWEEP_POWER + tuple(x + "_stderr" for x in SWEEP_POWER)}}
                      for n in names}
    return out


def landauer_curve(config, biases) -> np.ndarray:
    """The Landauer current of the run's device at each bias (run-file units in and out): the same
    transfer-matrix integral as each point's ``landauer_current`` (``engine.landauer_of_cells``).
    The device is built once, at the first non-zero bias: the linear_drop's potential is
    proportional to its bias, so each point scales it, and the band bottoms with it."""
    import dataclasses

    from bohmpower.devices.engine import _potential, build_open_model, landauer_of_cells
    from bohmpower.devices.landauer import device_potential

    biases = np.asarray(biases, dtype=float)
    reference = next((float(b) for b in biases if b != 0.0), 1.0)
    cfg = point_config(config, reference)
    model, injection, _ = build_open_model(cfg)
    atomic = cfg.to_atomic()
    t = float(atomic.time.t_end)
    left, right = injection.reservoirs
    ends = np.array([left.x_inject, right.x_inject])
    edges, u_all = device_potential(model, ends[0], ends[1], t, refine=2)
    drops = [d for d in model.drives if d.kind == "linear_drop"]

    def drop_at(x):  # the linear_drop's part of U0 + q phi at the reference bias
        return sum(float(d.profile(t)) * np.asarray(d.potential(x), dtype=float) for d in drops)

    u_drop = drop_at(0.5 * (edges[1:] + edges[:-1]))  # device_potential's cell midpoints
    end_all, end_drop = _potential(model, ends, t), drop_at(ends)  # the band bottoms
    e_f = float(atomic.reservoirs.fermi_energy)
    out = []
    for bias in biases:
        scale = float(bias) / reference - 1.0  # the drop's share beyond the reference bias
        values = u_all + scale * u_drop
        bottoms = end_all + scale * end_drop
        res = [dataclasses.replace(r, band_bottom=float(u), mu=float(u) + e_f)
               for r, u in zip((left, right), bottoms, strict=True)]
        j = landauer_of_cells(edges, values, model.mass, res[0], res[1],
                              atomic.reservoirs.degeneracy)[0]
        out.append(config.unit_system.from_atomic(j, "frequency"))
    return np.asarray(out, dtype=float)


def sweep(config, biases, directory: Path, stem: str, comm=None, workers=None, log=print) -> list:
    """Run (or read back) every point; returns rows (bias, current, stderr, landauer, path).

    Under MPI the ranks are split into groups, at most one per point (rank r in group r mod G),
    and the points are dealt out to the groups (point i to group i mod G); each point's worlds
    are spread over its group's ranks. A point's result does not depend on how many ranks ran it,
    so the sweep's files do not depend on the rank count either."""
    import h5py

    from bohmpower import io
    from bohmpower.checkpoint import Checkpoint, run_identity
    from bohmpower.devices.engine import OpenSolver

    if config.reservoirs is None:
        raise ConfigError("reservoirs", "a sweep needs an open-system run file ([reservoirs])")
    size = 1 if comm is None else comm.size
    rank = 0 if comm is None else comm.rank
    root = rank == 0
    directory = Path(directory)
    if root:
        directory.mkdir(parents=True, exist_ok=True)
    n_groups = max(1, min(size, len(biases)))
    color = rank % n_groups
    split = comm.Split(color, rank) if n_groups > 1 else None
    group = split if split is not None else comm
    if group is not None and group.size == 1:
        group = None  # one rank per point: it runs serially
    if root and n_groups > 1:
        log(f"sweep: {len(biases)} points on {n_groups} groups of ranks "
            f"({size // n_groups}-{-(-size // n_groups)} rank(s) each)")
    status, refused = {}, None
    for i in range(color, len(biases), n_groups):
        bias = biases[i]
        path = point_path(directory, stem, bias)
        cfg = point_config(config, bias)
        if not path.exists():
            try:
                solver = OpenSolver(cfg, workers=workers)
            except ConfigError as exc:  # this bias's device refuses the run file (on every
                refused = (i, exc.key, f"at bias {bias:g}: {exc.message}")  # rank of the group)
                break
            # the point's finished blocks of worlds go to POINT.h5.checkpoint, so a sweep killed
            # inside a point resumes inside it; removed once the point's result is written
            checkpoint = Checkpoint(path, run_identity(cfg))
            result = solver.run(comm=group, checkpoint=checkpoint, resume=True)
            if group is None or group.rank == 0:
                result.ranks = 1 if group is None else group.size
                io.write_open_result(path, result, cfg)
                checkpoint.remove()
            if group is not None:
                group.Barrier()
            status[i] = "run"
        else:
            status[i] = "exists, skipped"
    # a point refused on one group of ranks is refused on every rank (the other groups finish
    # the points they are running first, so no finished point is lost), the first one by bias
    refusals = [refused] if comm is None else comm.allgather(refused)
    refusals = sorted(r for r in refusals if r is not None)
    if refusals:
        if split is not None:
            split.Free()
        raise ConfigError(refusals[0][1], refusals[0][2] + "; every finished point is kept "
                          "and is not run again")
    if comm is not None:
        statuses = comm.gather(status, root=0)
        if root:
            status = {k: v for d in statuses for k, v in d.items()}
        comm.Barrier()  # every point's file is written before rank 0 reads them
    if split is not None:
        split.Free()
    rows = []
    if root:
        for i, bias in enumerate(biases):
            path = point_path(directory, stem, bias)
            with h5py.File(path, "r") as f:
                sg = f["steady_state"]
                row = (float(bias), float(sg["exit_current"][()]),
                       float(sg["exit_current_stderr"][()]), float(sg["landauer_current"][()]),
                       sg["current"].attrs["units"], path)
                model = float(sg["model_current"][()])
            rows.append(row)
            log(f"bias {row[0]:.6g}: current {row[1]:.6g} +- {row[2]:.3g} {row[4]} (Landauer "
                f"{row[3]:.6g}, injection model {model:.6g}); {path.name} ({status[i]})")
    if root:
        from bohmpower.plot import plot_sweep

        figure = plot_sweep(directory)
        log(f"figure: {figure} (I(V) beside Landauer, the steady-state power per volume)")
    return rows
