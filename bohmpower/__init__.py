"""bohmpower: local energy and local power of driven interacting electrons from Bohmian trajectories.

Public surface::

    config = bohmpower.load_config("run.toml")
    result = bohmpower.exact(config)          # ExactResult, atomic units
    solver = bohmpower.ExactSolver(config)    # notebooks: .frames() / .run()
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "load_config",
    "parse_config",
    "RunConfig",
    "build_model",
    "ExactSolver",
    "ExactResult",
    "exact",
    "BohmpowerError",
    "ConfigError",
    "NumericalError",
]

# Names are resolved on first use so that `bohmpower info` does not pay for numba and scipy.
_LAZY = {
    "load_config": "bohmpower.config",
    "parse_config": "bohmpower.config",
    "RunConfig": "bohmpower.config",
    "build_model": "bohmpower.model",
    "ExactSolver": "bohmpower.driver",
    "ExactResult": "bohmpower.driver",
    "BohmpowerError": "bohmpower.errors",
    "ConfigError": "bohmpower.errors",
    "NumericalError": "bohmpower.errors",
}


def exact(config, workers: int | None = None):
    """Run the exact solver on ``config`` (a RunConfig or a path to a run file) and return the result."""
    from pathlib import Path

    from bohmpower.config import load_config
    from bohmpower.driver import ExactSolver

    if isinstance(config, (str, Path)):
        config = load_config(config)
    config.check_command("exact")
    return ExactSolver(config, workers=workers).run()


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bohmpower' has no attribute {name!r}")
