"""bohmpower: local energy and local power of driven interacting electrons from Bohmian trajectories.

Public surface::

    config = bohmpower.load_config("run.toml")    # one run file serves both engines
    exact = bohmpower.exact(config, progress=True)  # ExactResult, atomic units ([method] ignored)
    cw = bohmpower.run(config, progress=True)     # CWResult: conditional-wavefunction estimates
    bohmpower.save(cw, "run.cw.h5")               # the result file the command line writes
    tree = bohmpower.load_result("run.cw.h5")     # xarray.DataTree, units on every variable
    solver = bohmpower.ExactSolver(config)        # step by step: .frames() / .run()
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
    "run",
    "save",
    "load_result",
    "CWSolver",
    "CWResult",
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
    "CWSolver": "bohmpower.driver",
    "CWResult": "bohmpower.driver",
    "run": "bohmpower.api",
    "save": "bohmpower.api",
    "load_result": "bohmpower.api",
    "BohmpowerError": "bohmpower.errors",
    "ConfigError": "bohmpower.errors",
    "NumericalError": "bohmpower.errors",
}


# The subpackage bohmpower.exact (empty __init__, cheap) is imported before the function of the same
# name is defined: importing a subpackage binds its name in this module once, on its first import,
# so `bohmpower.exact` stays the function however the solver's modules are imported later.
import bohmpower.exact  # noqa: E402,F401


def exact(config, workers: int | None = None, *, samples: int | None = None,
          seed: int | None = None, progress=None):
    """Run the exact solver on ``config`` (a RunConfig or a run file's path) and return its
    ExactResult; ``[method]`` is ignored. Parameters: :func:`bohmpower.api.exact`."""
    from bohmpower.api import exact as _exact

    return _exact(config, workers, samples=samples, seed=seed, progress=progress)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bohmpower' has no attribute {name!r}")
