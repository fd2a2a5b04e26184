"""The Python interface: run either engine from a notebook, save results, read them back as xarray.

Both engines take the same run file: ``bohmpower.exact`` ignores ``[method]`` (it is read by the
conditional-wavefunction engine only), and ``[trajectories]`` gives the exact solver its exact
Bohmian trajectories and ``bohmpower.run`` its Monte Carlo worlds.

``progress`` (both engines): ``True`` shows a tqdm bar (a notebook widget inside Jupyter when
ipywidgets is installed, text otherwise), a callable is called as ``progress(done, total)`` after
each unit of work (stored frames for the exact solver, samples for ``run``), ``False``/``None``
shows nothing.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("bohmpower")


def _as_config(config, samples: int | None = None, seed: int | None = None):
    """A RunConfig from a RunConfig or a run file's path, with ``samples``/``seed`` applied."""
    from bohmpower.config import RunConfig, load_config

    if isinstance(config, (str, Path)):
        config = load_config(config)
    elif not isinstance(config, RunConfig):
        raise TypeError(f"config: expected a run file's path or a RunConfig (bohmpower."
                        f"load_config), got {type(config).__name__}")
    return config.with_overrides(samples=samples, seed=seed)


class _Progress:
    """One progress sink for ``progress=`` (True, a callable, or False/None)."""

    def __init__(self, progress, total: int, unit: str, description: str):
        self.total, self.done = int(total), 0
        self._bar = None
        self._call: Callable[[int, int], Any] | None = None
        if progress is True:
            try:  # a notebook widget needs ipywidgets; without it tqdm.auto warns, so use text
                import ipywidgets  # noqa: F401
                from tqdm.auto import tqdm
            except ImportError:
                from tqdm import tqdm

            self._bar = tqdm(total=self.total, unit=unit, desc=description)
        elif callable(progress):
            self._call = progress
        elif progress not in (None, False):
            raise TypeError(f"progress: expected True (a tqdm bar), a callable progress(done, "
                            f"total), or False/None, got {progress!r}")

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        if self._bar is not None:
            self._bar.update(n)
        if self._call is not None:
            self._call(self.done, self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def exact(config, workers: int | None = None, *, samples: int | None = None,
          seed: int | None = None, progress=None):
    """Run the exact solver and return its :class:`~bohmpower.driver.ExactResult` (atomic units).

    Parameters
    ----------
    config : RunConfig or str or Path
        The run (``bohmpower.load_config``) or the path of its run file. ``[method]``, if present,
        is ignored (it belongs to :func:`run`); ``[trajectories]`` adds exact Bohmian trajectories.
    workers : int, optional
        FFT threads (default: ``[numerics] fft_workers``).
    samples, seed : int, optional
        Override ``[trajectories] count`` and ``seed``, as ``--samples`` and ``--seed`` do.
    progress : bool or callable, optional
        ``True``: a tqdm bar over the stored frames; a callable: ``progress(done, total)`` after
        each stored frame; ``False``/``None``: nothing.

    Returns
    -------
    ExactResult
        Write it with :func:`save`; read a saved one with :func:`load_result`.
    """
    from bohmpower.driver import ExactSolver

    config = _as_config(config, samples, seed)
    config.check_command("exact")
    for note in config.command_notes("exact"):
        log.info("note: %s", note)
    solver = ExactSolver(config, workers=workers)
    for w in solver.warnings:
        warnings.warn(w, stacklevel=2)
    sink = _Progress(progress, len(solver.time_config.frame_steps), "frames", "exact")
    try:
        return solver.run(observers=(lambda step, t, frame: sink.update(1),))
    finally:
        sink.close()


def run(config, workers: int | None = None, *, samples: int | None = None,
        seed: int | None = None, progress=None, discard_bad_samples: bool = False):
    """Run the conditional-wavefunction engine (serially) and return its ``CWResult``.

    Parameters
    ----------
    config : RunConfig or str or Path
        The run or the path of its run file; it needs ``[trajectories]`` (the number of worlds,
        or ``samples=``). ``[method]`` chooses the scheme (zeroth order when absent).
    workers : int, optional
        FFT threads (default: ``[numerics] fft_workers``).
    samples, seed : int, optional
        Override ``[trajectories] count`` and ``seed``.
    progress : bool or callable, optional
        ``True``: a tqdm bar over the samples; a callable: ``progress(done, total)`` as samples
        finish; ``False``/``None``: nothing.
    discard_bad_samples : bool
        Drop (and count) samples whose numerical health fails, as ``--discard-bad-samples``.

    Returns
    -------
    CWResult
        Estimates with standard errors (atomic units). Write it with :func:`save`. For MPI,
        checkpoints and clean stops use the command line, ``bohmpower run``.
    """
    from bohmpower.driver import CWSolver

    config = _as_config(config, samples, seed)
    config.check_command("run")
    if config.open_system:  # [reservoirs]: an OpenResult (docs/devices.md)
        from bohmpower.devices.engine import OpenSolver

        solver, unit, kind = OpenSolver(config, workers=workers), "worlds", "open"
    else:
        solver = CWSolver(config, workers=workers, discard_bad_samples=discard_bad_samples)
        unit, kind = "samples", "cw"
    for w in solver.warnings:
        warnings.warn(w, stacklevel=2)
    sink = _Progress(progress, solver.n_samples, unit, kind)
    try:
        return solver.run(progress=sink.update)
    finally:
        sink.close()


def save(result, path, *, overwrite: bool = False) -> Path:
    """Write a result of :func:`exact` or :func:`run` as a result file (the same file the command
    line writes; read it back with :func:`load_result`) and return its path.

    An existing file is replaced only with ``overwrite=True``.
    """
    from bohmpower import io
    from bohmpower.driver import CWResult, ExactResult

    config = getattr(result, "config", None)
    if config is None:
        raise TypeError("result: expected what bohmpower.exact or bohmpower.run returned "
                        f"(it carries its run), got {type(result).__name__}")
    names = {"path_key": "path", "overwrite_flag": "overwrite=True"}
    if isinstance(result, ExactResult):
        return io.write_exact_result(Path(path), result, config, overwrite=overwrite, **names)
    if isinstance(result, CWResult):
        return io.write_cw_result(Path(path), result, config, overwrite=overwrite, **names)
    from bohmpower.devices.engine import OpenResult

    if isinstance(result, OpenResult):
        return io.write_open_result(Path(path), result, config, overwrite=overwrite, **names)
    raise TypeError(f"result: expected an ExactResult or a CWResult, got {type(result).__name__}")


def load_result(path):
    """Read a result file into an ``xarray.DataTree``, held in memory (the file is closed).

    Groups follow the file: ``volumes/<name>`` (and its ``window``), ``global``, ``fields``,
    ``model``, ``trajectories``, ``trajectory_estimates``, ``diagnostics``, ...; every variable has
    ``units`` and ``long_name`` attributes and named dimensions (``time``, ``x`` and ``window``
    with coordinates; ``sample``, ``electron``, ``block``, ``field``, ``step`` without). The same
    tree comes from ``xarray.open_datatree(path, engine="h5netcdf")``.
    """
    import xarray as xr

    from bohmpower import io
    from bohmpower.errors import ResultFileError

    path = Path(path)
    with io.result_reader(path):
        pass  # refuses anything that is not a bohmpower result file, naming what is wrong
    try:
        tree = xr.open_datatree(path, engine="h5netcdf")
    except (ValueError, KeyError) as exc:
        raise ResultFileError(
            f"{path}: written by an older bohmpower, whose result files do not name every axis, "
            f"so xarray cannot label it ({exc}); read it with bohmpower.io.read_result, or rerun "
            "the run to get a file load_result reads") from None
    with tree:
        return tree.load().copy()
