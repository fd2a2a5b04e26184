"""Shared helpers: small run files built as dicts, so each test states the physics it needs."""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import pytest

# Tests and benchmarks time and compare at one thread (SPEC.md "Benchmarks").
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The commands' fixed-cost records (bohmpower.estimates) go to a throwaway folder, not ~/.cache.
os.environ.setdefault("BOHMPOWER_CACHE_DIR", tempfile.mkdtemp(prefix="bohmpower-cache-"))

REPO = Path(__file__).resolve().parent.parent


def run_dict(**sections) -> dict:
    """A minimal valid exact run (one free electron) updated section by section.

    A section given as ``None`` is removed; a dict replaces the section wholesale.
    """
    base = {
        "schema": "bohmpower-run/1",
        "title": "test",
        "units": {"system": "atomic"},
        "particles": {"count": 1, "mass": 1.0, "statistics": "fermion"},
        "grid": {"x_min": -40.0, "x_max": 40.0, "points": 128, "boundary": "periodic"},
        "time": {"dt": 0.05, "t_end": 1.0, "save_every": 5},
        "initial": {"packet": [{"center": 0.0, "width": 2.0, "wavenumber": 0.5}]},
        "volume": [{"name": "right", "x_min": 0.0, "x_max": 10.0}],
    }
    out = copy.deepcopy(base)
    for key, val in sections.items():
        if val is None:
            out.pop(key, None)
        else:
            out[key] = copy.deepcopy(val)
    return out


def make_config(tmp_path: Path | None = None, **sections):
    from bohmpower.config import parse_config

    return parse_config(run_dict(**sections), Path(tmp_path) if tmp_path else REPO)


def write_run_file(path: Path, data: dict) -> Path:
    """Write ``data`` as TOML (tests only need tables, arrays of tables and scalars)."""
    lines = []

    def scalar(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(v)

    top = {k: v for k, v in data.items() if not isinstance(v, (dict, list))}
    for k, v in top.items():
        lines.append(f"{k} = {scalar(v)}")

    def table(prefix, d):
        simple = {k: v for k, v in d.items() if not isinstance(v, (dict, list))}
        nested = {k: v for k, v in d.items() if isinstance(v, (dict, list))}
        return simple, nested

    def emit(prefix, d, array=False):
        simple, nested = table(prefix, d)
        lines.append(f"[[{prefix}]]" if array else f"[{prefix}]")
        for k, v in simple.items():
            lines.append(f"{k} = {scalar(v)}")
        for k, v in nested.items():
            if isinstance(v, list):
                for item in v:
                    emit(f"{prefix}.{k}", item, array=True)
            else:
                emit(f"{prefix}.{k}", v)

    for k, v in data.items():
        if isinstance(v, dict):
            emit(k, v)
        elif isinstance(v, list):
            for item in v:
                emit(k, item, array=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def run_file(tmp_path):
    """Factory: ``run_file(**sections)`` writes a run file in tmp_path and returns its path."""

    def factory(name="run.toml", **sections):
        return write_run_file(tmp_path / name, run_dict(**sections))

    return factory


def run_example(example: Path, tmp_path: Path, config: dict, command: str = "exact") -> Path:
    """Write a (shrunk) example run file, run it through the command line and the example's
    plot.py, check the figure was written, and return the result file."""
    import subprocess
    import sys

    run = write_run_file(tmp_path / "run.toml", config)
    out = tmp_path / "out.h5"
    subprocess.run([sys.executable, "-m", "bohmpower", command, str(run), "-o", str(out), "-q"],
                   check=True, cwd=tmp_path)
    plotted = subprocess.run([sys.executable, str(example / "plot.py"), str(out)], check=True,
                             capture_output=True, text=True)
    png = out.with_suffix(".png")
    assert png.exists() and png.stat().st_size > 10_000, plotted.stdout
    return out
