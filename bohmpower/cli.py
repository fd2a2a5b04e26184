"""Command line: ``bohmpower run | exact | check | compare | plot | info`` (SPEC.md).

Exit codes: 0 success; 2 bad run file or arguments (one message naming the key); 1 numerical failure
(with the step and time); 3 `compare` found DISAGREE (unless --report-only); 75 stopped cleanly with a
checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from importlib import resources
from pathlib import Path

from bohmpower.errors import BohmpowerError, ConfigError, StorageError

log = logging.getLogger("bohmpower")

DEMO_EXACT = "exact_demo.toml"
DEMO_RUN = "run_demo.toml"


def _version() -> str:
    from bohmpower import __version__

    return __version__


def _demo_path(name: str) -> Path:
    return Path(str(resources.files("bohmpower") / "demo" / name))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="bohmpower",
        description="Local energy and local power of driven interacting electrons "
        "(Albareda, Traversa, Oriols 2016) from exact wavefunctions and Bohmian trajectories.",
    )
    ap.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("exact", help="exact many-electron wavefunction on the full grid (N <= 3)")
    p.add_argument("run_file", nargs="?", type=Path,
                   help="run file (TOML); [method] is ignored (it is for `run`, so one file "
                   "serves both), [trajectories] adds exact Bohmian trajectories; without it a "
                   "built-in two-electron demo runs")
    p.add_argument("-o", "--output", type=Path, help="result file (default: RUN.exact.h5 beside RUN.toml)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result file")
    p.add_argument("--seed", type=int, help="override [trajectories] seed")
    p.add_argument("--samples", type=int, help="override [trajectories] count")
    p.add_argument("--workers", type=int, help="FFT threads (default: [numerics] fft_workers)")
    _common(p)

    p = sub.add_parser("run", help="conditional-wavefunction Monte Carlo (any N)")
    p.add_argument("run_file", nargs="?", type=Path,
                   help="run file (TOML) with [trajectories] and [method]; without it a built-in "
                   "demo runs")
    p.add_argument("-o", "--output", type=Path, help="result file (default: RUN.cw.h5 beside RUN.toml)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result file")
    p.add_argument("--seed", type=int, help="override [trajectories] seed")
    p.add_argument("--samples", type=int, help="override [trajectories] count")
    p.add_argument("--workers", type=int, help="FFT threads (default: [numerics] fft_workers)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT.h5.checkpoint (after a crash, a stop, or with "
                   "--samples to extend a finished run that kept its checkpoint)")
    p.add_argument("--keep-checkpoint", action="store_true",
                   help="keep OUT.h5.checkpoint after a successful run (default: removed once the "
                   "result is written), to extend the run later with --resume --samples M2")
    p.add_argument("--checkpoint-every", type=int, metavar="K",
                   help="write finished samples to the checkpoint every K samples (default: "
                   "each block of 64)")
    p.add_argument("--checkpoint-interval", type=float, metavar="SECONDS",
                   help="...or every SECONDS of wall time")
    p.add_argument("--max-wall-time", type=float, metavar="SECONDS",
                   help="stop cleanly (checkpoint, exit 75) before this wall time is exceeded")
    p.add_argument("--discard-bad-samples", action="store_true",
                   help="drop samples whose numerical health fails (counted in "
                   "/diagnostics/discarded_samples; refused above 1%% of the samples)")
    _common(p)

    p = sub.add_parser("sweep", help="open-system runs at a series of biases, I(V) beside Landauer")
    p.add_argument("run_file", type=Path, help="run file (TOML) with [reservoirs] and one linear_drop")
    p.add_argument("--bias", required=True,
                   help="start:stop:count, in the run file's energy unit (e.g. 0:0.03:4)")
    p.add_argument("-o", "--output-dir", type=Path,
                   help="directory of the results, one per bias (default: RUN.sweep beside RUN.toml); "
                   "a point whose result exists is skipped (resume)")
    p.add_argument("--workers", type=int, help="FFT threads (default: [numerics] fft_workers)")
    _common(p)

    p = sub.add_parser("check", help="validate a run file and print the resolved setup; runs nothing")
    p.add_argument("run_file", type=Path)
    _common(p)

    p = sub.add_parser("compare", help="exact grid values against trajectory or CW estimates")
    p.add_argument("exact_file", type=Path, help="exact result (the reference)")
    p.add_argument("other_file", type=Path, help="cw result, or an exact result with trajectories")
    p.add_argument("--plot", type=Path, metavar="FIG.png", help="also draw the comparison")
    p.add_argument("--alpha", type=float, default=1e-3,
                   help="family-wise false-alarm probability of the agreement bounds")
    p.add_argument("--report-only", action="store_true",
                   help="exit 0 whatever the verdict (default: exit 3 when it is DISAGREE)")
    # the old opt-in, now the default; still accepted so that scripts keep working
    p.add_argument("--fail-on-disagreement", action="store_true", help=argparse.SUPPRESS)
    _common(p)

    p = sub.add_parser("plot", help="standard figures of a result file, or I(V) of a sweep folder")
    p.add_argument("result_file", type=Path,
                   help="result file, or the folder of a `bohmpower sweep` (I(V) beside Landauer, "
                   "the steady-state power per volume)")
    p.add_argument("-o", "--output", type=Path, help="figure file; its suffix (.png, .pdf, .svg) sets the format (default: OUT.png)")
    p.add_argument("--volumes", metavar="A,B",
                   help="the volumes to draw (default: all, left to right)")
    p.add_argument("--terms", metavar="P,Q",
                   help="the power terms to draw: power, field_work, interaction, quantum, "
                   "boundary_flux, absorbed (default: all)")
    p.add_argument("--t-range", nargs=2, type=float, metavar=("T0", "T1"),
                   help="time range of the time axes, in the file's time unit")
    p.add_argument("--symlog", action="store_true",
                   help="power terms on a symmetric log axis (terms of very different sizes)")
    _common(p)

    p = sub.add_parser("info", help="what a result file holds")
    p.add_argument("result_file", type=Path)
    _common(p)
    return ap


def _setup_logging(args) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    # numba's own debug output is not ours to show.
    logging.getLogger("numba").setLevel(logging.WARNING)


def _load(run_file: Path, command: str, args=None):
    from bohmpower.config import load_config

    config = load_config(run_file)
    if args is not None and (getattr(args, "seed", None) is not None
                             or getattr(args, "samples", None) is not None):
        config = config.with_overrides(samples=args.samples, seed=args.seed)
    config.check_command(command)
    return config


def cmd_exact(args) -> int:
    import numpy as np  # noqa: F401  (import cost paid before the timer)

    from bohmpower import io
    from bohmpower.driver import ExactSolver

    if args.run_file is None:
        run_file = _demo_path(DEMO_EXACT)
        output = args.output or Path.cwd() / "bohmpower_demo.exact.h5"
        log.info("no run file given: running the built-in demo (%s)", run_file)
    else:
        run_file = args.run_file
        output = args.output or _default_output(run_file, ".exact.h5")
    config = _load(run_file, "exact", args)
    for note in config.command_notes("exact"):
        log.info("note: %s", note)
    io.check_output_path(output, args.overwrite, inputs=_inputs(run_file, config))
    log.info("exact run: %s", config.title or run_file.name)
    solver = ExactSolver(config, workers=args.workers)
    for w in solver.warnings:
        log.warning("warning: %s", w)
    from bohmpower.estimates import exact_run_cost

    t_est = time.perf_counter()
    cost = exact_run_cost(config, solver=solver)  # as `bohmpower check` prints it
    t_est = time.perf_counter() - t_est
    # the first calls' one-off time (numba loading, plans) is paid here, not again by the run
    estimate = cost["seconds"] - cost["first_calls"]
    log.info("estimated run time (the run's kernels timed here, as bohmpower check): %.1f s",
             estimate)
    progress = _progress(len(config.time.frame_steps), args.quiet, "frames")
    t0 = time.perf_counter()
    try:
        result = solver.run(observers=(lambda step, t, fr: progress.update(1),))
    finally:
        progress.close()
    run_wall = time.perf_counter() - t0
    path = io.write_exact_result(output, result, config, overwrite=args.overwrite)
    wall = time.perf_counter() - t0
    g = result.globals
    q = config.unit_system.quantity
    log.info("done in %.1f s (estimated %.1f s: measured / estimate = %.2f): %d frames; norm "
             "%.6f -> %.6f; internal energy %s -> %s", wall, estimate, wall / max(estimate, 1e-9),
             len(result.time), g["norm"][0], g["norm"][-1], q(g["energy"][0], "energy", digits=8),
             q(g["energy"][-1], "energy", digits=8))
    tm = result.timings
    if tm:
        log.info("measured: observables %.1f s (%d quadrature nodes, %d edge-term nodes, %d "
                 "frames), propagation and the rest %.1f s, set-up %.1f s, result file %.1f s "
                 "(bohmpower check prints the estimate of each)", tm["observables"], tm["nodes"],
                 tm.get("edge_nodes", 0), len(result.time), tm["rest"], tm["setup"],
                 wall - result.wall_time)
    log.info("result: %s  (inspect: bohmpower info %s)", path, path)
    _record_overhead("exact", run_wall + t_est,
                     int(solver.model.grid.n_x) ** int(solver.model.n_particles))
    return 0


def _record_overhead(command: str, modelled: float, points: int | None = None) -> None:
    """Keep this command's fixed cost (its whole wall time less the run and less its own estimate,
    which `check` adds as it measures them) for `check` on this machine, by the run's size
    (``points`` grid values) too."""
    from bohmpower.estimates import process_elapsed, record_command_overhead

    total = process_elapsed()
    if total is not None:
        record_command_overhead(command, total - modelled, points)


def _default_output(run_file: Path, suffix: str) -> Path:
    """RUN.toml -> RUN<suffix> beside it; a run-file argument that names no file (an empty
    string, a folder) is refused here, before a name is derived from it."""
    if not run_file.name or run_file.is_dir():
        raise ConfigError(str(run_file) if str(run_file) not in ("", ".") else "RUN",
                          "not a run file (an empty name or a folder); give the path of a "
                          ".toml run file")
    return run_file.with_suffix(suffix)


def _inputs(run_file: Path, config) -> list[Path]:
    """Files a run reads: its run file and any table files (never to be overwritten by -o)."""
    return [Path(run_file)] + [p.file for p in config.potential if getattr(p, "file", None)]


#: SIGTERM seen by `run` (the handler is installed first thing in main, before the imports and the
#: numba compile, so a job stopped during start-up still exits 75 with a checkpoint).
_STOP: dict = {"signal": None}


def _on_term(signum, frame):
    _STOP["signal"] = signum


def cmd_run(args) -> int:
    from bohmpower.checkpoint import Checkpoint, run_identity
    from bohmpower.parallel import world_comm

    try:
        comm = world_comm()
    except RuntimeError as exc:
        raise ConfigError("mpiexec", str(exc)) from None
    root = comm.rank == 0
    if not root:
        logging.getLogger().setLevel(logging.WARNING)
    if args.run_file is None:
        run_file = _demo_path(DEMO_RUN)
        output = args.output or Path.cwd() / "bohmpower_demo.cw.h5"
        log.info("no run file given: running the built-in demo (%s)", run_file)
    else:
        run_file = args.run_file
        output = args.output or _default_output(run_file, ".cw.h5")
    for name in ("checkpoint_every", "checkpoint_interval", "max_wall_time"):
        val = getattr(args, name)
        if val is not None and not val > 0:
            raise ConfigError("--" + name.replace("_", "-"), "must be positive")
    config = _load(run_file, "run", args)
    checkpoint = Checkpoint(output, run_identity(config))
    # The file system is rank 0's: it checks, and every rank raises the same error, so no rank
    # races another that has already created the checkpoint.
    problem = _check_run_files(output, checkpoint, args, _inputs(run_file, config)) if root \
        else None
    problem = comm.bcast(problem, root=0)
    if problem is not None:
        checkpoint.unlock()
        raise ConfigError(*problem)
    try:
        return _run_locked(args, comm, config, run_file, output, checkpoint)
    finally:
        checkpoint.unlock()


def _run_open(args, comm, config, run_file, output, checkpoint) -> int:
    """An open-system run ([reservoirs]; docs/devices.md): every finished block of worlds goes to
    the checkpoint, which --resume reads back."""
    import numpy as np

    from bohmpower import io
    from bohmpower.devices.engine import OpenSolver

    root = comm.rank == 0
    solver = OpenSolver(config, workers=args.workers)
    if root:
        for w in solver.warnings:
            log.warning("warning: %s", w)
        log.info("open-system run: %s; %d worlds, %d rank(s)", config.title or run_file.name,
                 solver.n_samples, comm.size)
    progress = _progress(solver.n_samples, args.quiet or not root, "worlds")
    try:
        result = solver.run(comm=comm, progress=_Advance(progress), checkpoint=checkpoint,
                            resume=args.resume, max_wall_time=args.max_wall_time,
                            stop_requested=lambda: _STOP["signal"] is not None)
    finally:
        progress.close()
    if not root:
        return 0
    result.ranks = comm.size
    try:
        path = io.write_open_result(output, result, config,
                                    overwrite=args.overwrite or args.resume)
    except StorageError as exc:
        raise StorageError(f"{exc} with --resume: the checkpoint {checkpoint.dir} holds every "
                           "finished block of worlds, so nothing is computed again") from None
    us = config.unit_system
    cur = result.current()
    for s, j, se in zip(result.surfaces, cur["mean"], cur["standard_error"], strict=True):
        log.info("current at %s: %s +- %s (Landauer %s)", us.quantity(s, "length"),
                 us.quantity(j, "frequency"), us.quantity(se, "frequency"),
                 us.quantity(result.landauer["current"], "frequency"))
    d = result.drift
    log.info("steady state: N(t) changes by %+.2g%% +- %.2g%% over the averaging window (z = "
             "%+.1f); its transient ends %s (MSER); warm-up %s", 100 * d["relative"],
             100 * d["stderr"], d["z"],
             "at about " + us.quantity(result.detected_steady_state_time, "time")
             if np.isfinite(result.detected_steady_state_time)
             else "after the first half of the run (not detected)",
             us.quantity(result.warm_up, "time"))
    noise = result.noise()
    if noise["periods"]:
        log.info("shot noise: Fano factor %.4g +- %.2g of the transmitted counts (%d attempt periods "
                 "x %d worlds); the injection model expects %.4g, the two-terminal formula %.4g",
                 noise["fano"], noise["fano_stderr"], noise["periods"], solver.n_samples,
                 noise["fano_model"], noise["fano_quantum"])
        if abs(noise["fano_model"] - noise["fano_quantum"]) > 0.1 * abs(noise["fano_quantum"]):
            log.info("  (the injected electrons are independent: where both reservoirs feed the "
                     "same energies, or at a finite temperature, the model's noise is not the "
                     "fermions' one; docs/devices.md, shot noise)")
    for w in result.warnings[len(solver.warnings):]:
        log.warning("warning: %s", w)
    log.info("done in %.1f s: %d worlds; result: %s", result.wall_time, solver.n_samples, path)
    if args.keep_checkpoint:
        log.info("checkpoint kept in %s (%.1f MB)", checkpoint.dir, checkpoint.size() / 1e6)
    else:
        checkpoint.remove()
    return 0


def _run_locked(args, comm, config, run_file, output, checkpoint) -> int:
    from bohmpower import io
    from bohmpower.driver import CWSolver

    if config.open_system:
        return _run_open(args, comm, config, run_file, output, checkpoint)
    root = comm.rank == 0
    solver = CWSolver(config, workers=args.workers, discard_bad_samples=args.discard_bad_samples)
    if root:
        for w in solver.warnings:
            log.warning("warning: %s", w)
        log.info("cw run: %s; %d electrons, %d samples, exchange %s, %d rank(s)",
                 config.title or run_file.name, solver.model.n_particles, solver.n_samples,
                 "on" if solver.exchange else "off", comm.size)
    estimate = None
    if root and not args.quiet:
        from bohmpower.estimates import run_command_seconds

        # as `bohmpower check` prints it (one core), shared by the ranks
        t_est = time.perf_counter()
        estimate = run_command_seconds(solver) / comm.size
        t_est = time.perf_counter() - t_est
        log.info("estimated run time (the run's kernels timed here, as bohmpower check, over %d "
                 "rank(s)): %.3g s", comm.size, estimate)
    progress = _progress(solver.n_samples, args.quiet or not root, "samples")
    if root and not args.quiet:
        solver.step_observer = _within_block(progress)
    try:
        result = solver.run(progress=_Advance(progress), comm=comm, checkpoint=checkpoint,
                            resume=args.resume, max_wall_time=args.max_wall_time,
                            checkpoint_every=args.checkpoint_every,
                            checkpoint_interval=args.checkpoint_interval,
                            stop_requested=lambda: _STOP["signal"] is not None)
    finally:
        progress.close()
    if not root:
        return 0
    result.ranks = comm.size
    try:
        path = io.write_cw_result(output, result, config, overwrite=args.overwrite or args.resume)
    except StorageError as exc:
        raise StorageError(f"{exc} with --resume: the checkpoint {checkpoint.dir} holds every "
                           "finished block, so nothing is computed again") from None
    if estimate is not None:
        log.info("measured %.3g s against the estimate %.3g s: measured / estimate = %.3g",
                 result.wall_time, estimate, result.wall_time / max(estimate, 1e-9))
        if not args.resume:
            _record_overhead("run", result.wall_time + t_est)
    rate = result.samples / max(result.wall_time, 1e-9)
    log.info("done in %.1f s: %d samples (%.2f samples/s) on %d rank(s), load imbalance %.2f "
             "(max/mean busy time); %d discarded, %d with crossings", result.wall_time,
             result.samples, rate, comm.size, result.load_imbalance, len(result.discarded),
             result.crossings)
    log.info("result: %s  (figures: bohmpower plot %s; inspect: bohmpower info %s)", path, path,
             path)
    if args.keep_checkpoint:
        log.info("checkpoint kept in %s (%.1f MB; extend the run with --resume --samples M2 "
                 "--overwrite, or delete the folder when done)", checkpoint.dir,
                 checkpoint.size() / 1e6)
    else:
        checkpoint.remove()
        log.info("checkpoint %s removed (the result is complete; --keep-checkpoint keeps it "
                 "to extend the run later)", checkpoint.dir)
    return 0


def _check_run_files(output: Path, checkpoint, args, inputs=()) -> tuple[str, str] | None:
    """(key, message) of what stops this run from starting, or None; takes the checkpoint
    folder's lock (refused when another run holds it) and removes a checkpoint that --overwrite
    (without --resume) replaces."""
    from bohmpower import io

    if (args.resume and output.is_file() and not args.overwrite
            and not any(os.path.abspath(output) == os.path.abspath(i) for i in inputs)):
        return ("--output", f"{output} exists (a finished run); to extend it with "
                "--resume --samples M2, add --overwrite")
    try:
        io.check_output_path(output, args.overwrite, inputs=inputs)
        checkpoint.lock()
    except ConfigError as exc:
        return (exc.key, exc.message)
    except OSError as exc:
        return ("--output", f"cannot use the checkpoint folder {checkpoint.dir} "
                f"({exc.strerror or exc}); choose another file with -o")
    # With the lock held no other run writes here: temporary files are leftovers of a killed
    # process (an MPI rank aborted mid-write, a full disk under SIGKILL).
    from bohmpower.checkpoint import remove_stale_temporaries

    for stale in (remove_stale_temporaries(checkpoint.dir, "*.tmp*")
                  + remove_stale_temporaries(output.parent, f"{output.name}.tmp*")):
        log.info("removed %s, left by a process that was killed while writing it", stale)
    orphans = checkpoint.orphan_problem()
    if orphans is not None and not (args.overwrite and not args.resume):
        return ("--resume" if args.resume else "--output", orphans)
    if checkpoint.exists() and not args.resume and not args.overwrite:
        return ("--resume", f"a checkpoint of an earlier run is in {checkpoint.dir}: add --resume "
                "to continue it, or --overwrite to start afresh")
    if args.resume and not checkpoint.exists():
        log.warning("--resume: no checkpoint in %s; starting from the first sample (a finished "
                    "run removes its checkpoint unless it was run with --keep-checkpoint)",
                    checkpoint.dir)
    if args.overwrite and not args.resume and (checkpoint.exists() or checkpoint.block_files()):
        checkpoint.remove()
    return None


class _Advance:
    """What an engine's ``progress`` argument gets: called with the work just finished, and
    ``skip(n)`` with the work a resumed run reads back, which the rate and the ETA leave out."""

    def __init__(self, sink) -> None:
        self.sink = sink

    def __call__(self, n: int = 1) -> None:
        self.sink.update(n)

    def skip(self, n: int) -> None:
        if isinstance(self.sink, _LogProgress):
            self.sink.skip(n)
        else:  # tqdm: its rate counts from ``initial``
            self.sink.initial = getattr(self.sink, "initial", 0) + n  # (a disabled bar has none)
            self.sink.update(n)


class _LogProgress:
    """Progress for non-interactive runs: a log line at every tenth of the total, with ETA."""

    def __init__(self, total: int, unit: str):
        self.total, self.unit, self.done = total, unit, 0
        self.skipped = 0
        self.start = time.perf_counter()
        self.next = max(1, total // 10)

    def skip(self, n: int) -> None:
        """Work read back by a resumed run: counted as done, not in the rate."""
        self.skipped += n
        self.done += n
        log.info("progress: %d/%d %s read back from the checkpoint", self.done, self.total,
                 self.unit)
        self.next = self.done + max(1, self.total // 10)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.done >= self.next or self.done == self.total:
            elapsed = time.perf_counter() - self.start
            rate = (self.done - self.skipped) / max(elapsed, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            log.info("progress: %d/%d %s, %.2f %s/s, ETA %.0f s", self.done, self.total,
                     self.unit, rate, self.unit, eta)
            self.next = self.done + max(1, self.total // 10)

    def close(self) -> None:
        pass


#: Seconds between log lines on the steps of a block in flight (non-interactive runs).
WITHIN_BLOCK_INTERVAL = 30.0


def _within_block(progress):
    """A ``CWSolver.step_observer`` for a progress sink: the step of the block in flight, in the
    tqdm bar's postfix, or (log lines) every WITHIN_BLOCK_INTERVAL seconds, so a run whose blocks
    take minutes is never silent between block lines."""
    last = [time.perf_counter()]

    def observe(first_id: int, step: int, n_steps: int) -> None:
        if hasattr(progress, "set_postfix_str"):
            if step % max(1, n_steps // 100) == 0 or step == n_steps:
                progress.set_postfix_str(f"block from sample {first_id}: step {step}/{n_steps}")
            return
        now = time.perf_counter()
        if now - last[0] >= WITHIN_BLOCK_INTERVAL and step < n_steps:
            last[0] = now
            log.info("progress: block of samples from %d at step %d/%d (%.0f%%)", first_id, step,
                     n_steps, 100.0 * step / n_steps)

    return observe


def _progress(total: int, quiet: bool, unit: str):
    from tqdm import tqdm

    if not quiet and not sys.stderr.isatty():
        return _LogProgress(total, unit)
    return tqdm(total=total, unit=unit, disable=quiet, dynamic_ncols=True, file=sys.stderr)


def cmd_check(args) -> int:
    from bohmpower.config import describe

    config = _load(args.run_file, "run" if config_has_method(args.run_file) else "exact")
    print(describe(config))
    if config.open_system:
        from bohmpower.devices.engine import describe_open

        print(describe_open(config))
        return 0
    from bohmpower.estimates import describe_estimates

    print(describe_estimates(config))
    return 0


def config_has_method(path: Path) -> bool:
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        return "method" in data or "reservoirs" in data  # an open system is a `run`
    except (OSError, ValueError):  # unreadable, not UTF-8, bad TOML: load_config says which
        return False


def cmd_sweep(args) -> int:
    from bohmpower.devices.sweep import parse_bias_range, sweep
    from bohmpower.parallel import world_comm

    try:
        comm = world_comm()
    except RuntimeError as exc:
        raise ConfigError("mpiexec", str(exc)) from None
    biases = parse_bias_range(args.bias)
    config = _load(args.run_file, "run")
    out = args.output_dir or args.run_file.with_suffix(".sweep")
    sweep(config, biases, out, args.run_file.stem, comm=comm if comm.size > 1 else None,
          workers=args.workers, log=print if comm.rank == 0 else (lambda *_: None))
    return 0


def cmd_info(args) -> int:
    from bohmpower.io import describe_result

    print(describe_result(args.result_file))
    return 0


def cmd_compare(args) -> int:
    from bohmpower.compare import compare_files, plot_comparison

    from bohmpower import io

    if not 0 < args.alpha < 1:
        raise ConfigError("--alpha", "must lie between 0 and 1")
    if args.plot:
        io.check_output_path(args.plot, True, inputs=(args.exact_file, args.other_file),
                             key="--plot")
    cmp = compare_files(args.exact_file, args.other_file, alpha=args.alpha)
    print(cmp.table())
    if args.plot:
        plot_comparison(cmp, args.plot)
        log.info("figure: %s", args.plot)
    disagree = cmp.overall is not None and not cmp.overall.ok
    code = 3 if disagree and not args.report_only else 0
    if disagree:
        print(f"exit code {code}: " + ("the verdict is DISAGREE (--report-only exits 0 instead)"
                                       if code else "DISAGREE, but --report-only was given"))
    elif cmp.overall is not None and cmp.overall.n_points:
        print("exit code 0: the verdict is agree (a DISAGREE verdict exits 3 unless --report-only)")
    else:
        print("exit code 0: no verdict without standard errors")
    return code


def cmd_plot(args) -> int:
    from bohmpower import io
    from bohmpower.plot import plot_result, plot_sweep

    if Path(args.result_file).is_dir():  # a sweep folder: I(V) and the power map
        out = plot_sweep(args.result_file, args.output)
        log.info("figure: %s", out)
        return 0
    figure = args.output or Path(args.result_file).with_suffix(".png")
    io.check_output_path(figure, True, inputs=(args.result_file,))
    if io.result_method(args.result_file) == "open":
        from bohmpower.plot import plot_open_result

        log.info("figure: %s", plot_open_result(args.result_file, args.output))
        return 0
    out = plot_result(args.result_file, args.output, volumes=args.volumes, terms=args.terms,
                      t_range=tuple(args.t_range) if args.t_range else None, symlog=args.symlog)
    log.info("figure: %s", out)
    return 0


COMMANDS = {"run": cmd_run, "exact": cmd_exact, "check": cmd_check, "info": cmd_info, "compare": cmd_compare,
            "plot": cmd_plot, "sweep": cmd_sweep}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    previous = None
    # A file-size limit (ulimit -f) then fails a write with EFBIG, reported like a full disk,
    # instead of killing the process half-way through a file.
    previous_xfsz = signal.signal(signal.SIGXFSZ, signal.SIG_IGN) if hasattr(signal, "SIGXFSZ") \
        else None
    if "run" in argv:
        # First thing, before the imports and the numba compile: a SIGTERM during start-up must
        # still end in a checkpoint and exit 75 (the run loop stops before its first block).
        _STOP["signal"] = None
        previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        args = _parser().parse_args(argv)
        _setup_logging(args)
        return _dispatch(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_xfsz is not None:
            signal.signal(signal.SIGXFSZ, previous_xfsz)


def _dispatch(args) -> int:
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except BrokenPipeError:
        # `bohmpower check RUN | head`: the reader left; nothing more to say, and nobody to say it to.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except BohmpowerError as exc:
        if exc.exit_code == 75:
            if _rank() == 0:
                log.warning("%s", exc)
            return 75
        if exc.exit_code == 2:
            # Bad input is found by every rank alike, before any collective: no abort needed.
            if _rank() == 0:
                log.error("error: %s", exc)
            return 2
        log.error("error: %s", exc)
        _abort_other_ranks(exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001  (the contract: never a bare traceback)
        report = _write_report(exc)
        cause = " ".join(f"{type(exc).__name__}: {exc}".split())
        if len(cause) > 300:
            cause = cause[:297] + "..."
        log.error("error: unexpected failure (%s); full report: %s. Please send it with the "
                  "run file to the developers.", cause, report)
        _abort_other_ranks(1)
        return 1


def _write_report(exc: BaseException) -> str:
    """Write the traceback and context of an unexpected failure to a file; return its path."""
    import platform

    import bohmpower

    text = (f"bohmpower {getattr(bohmpower, '__version__', '?')} on Python "
            f"{platform.python_version()} ({platform.platform()})\n"
            f"command: {' '.join(sys.argv)}\ncwd: {os.getcwd()}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    for folder in (tempfile.gettempdir(), os.getcwd()):
        try:
            fd, path = tempfile.mkstemp(prefix="bohmpower-report-", suffix=".txt", dir=folder)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            return path
        except OSError:
            continue
    return "(no report: no writable folder)"


def _rank() -> int:
    import sys as _sys

    if "mpi4py.MPI" in _sys.modules:
        return _sys.modules["mpi4py.MPI"].COMM_WORLD.Get_rank()
    return 0


def _abort_other_ranks(code: int) -> None:
    """Under MPI, an error on one rank must end the job, or the others wait for it forever."""
    import sys as _sys

    mpi = _sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.COMM_WORLD.Get_size() > 1:
        logging.shutdown()
        mpi.COMM_WORLD.Abort(code)
