"""``bohmpower sweep RUN.toml --bias a:b:n``: one open-system run per bias point (docs/devices.md).

Each point is the run file with the bias of its ``linear_drop`` field set to the point's value (one
such field is required), written to ``<stem>.bias<value>.h5`` in the output directory. A point whose
result file exists is not run again (so an interrupted sweep resumes where it stopped), and its
current is read back from the file. The sweep prints I(V) beside the Landauer current. Points run one
after the other (each one's worlds over the ranks, as in ``bohmpower run``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np

from bohmpower.config import parse_config
from bohmpower.errors import ConfigError

__all__ = ["parse_bias_range", "point_config", "sweep"]


def parse_bias_range(text: str) -> np.ndarray:
    """``a:b:n`` -> n biases from a to b inclusive (n >= 1; n = 1 needs a == b)."""
    parts = text.split(":")
    try:
        a, b, n = float(parts[0]), float(parts[1]), int(parts[2])
        if len(parts) != 3:
            raise ValueError
    except (ValueError, IndexError):
        raise ConfigError("--bias", f"expected start:stop:count (e.g. 0:0.03:4), got {text!r}")
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


def sweep(config, biases, directory: Path, stem: str, comm=None, workers=None, log=print) -> list:
    """Run (or read back) every point; returns rows (bias, current, stderr, landauer, path)."""
    import h5py

    from bohmpower import io
    from bohmpower.devices.engine import OpenSolver

    if config.reservoirs is None:
        raise ConfigError("reservoirs", "a sweep needs an open-system run file ([reservoirs])")
    root = comm is None or comm.rank == 0
    directory = Path(directory)
    if root:
        directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for bias in biases:
        path = point_path(directory, stem, bias)
        cfg = point_config(config, bias)
        if not path.exists():
            result = OpenSolver(cfg, workers=workers).run(comm=comm)
            if root:
                result.ranks = 1 if comm is None else comm.size
                io.write_open_result(path, result, cfg)
            if comm is not None:
                comm.Barrier()
            status = "run"
        else:
            status = "exists, skipped"
        if root:
            with h5py.File(path, "r") as f:
                sg = f["steady_state"]
                row = (float(bias), float(sg["exit_current"][()]),
                       float(sg["exit_current_stderr"][()]), float(sg["landauer_current"][()]),
                       sg["current"].attrs["units"], path)
            rows.append(row)
            log(f"bias {row[0]:.6g}: current {row[1]:.6g} +- {row[2]:.3g} {row[4]} (Landauer "
                f"{row[3]:.6g}); {path.name} ({status})")
    return rows
