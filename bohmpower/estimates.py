"""Memory and run-time estimates printed by ``bohmpower check`` (nothing is propagated).

An estimate is the run's kernels timed here (``exact_run_cost``, ``cw_run_cost``,
``interacting_run_cost``), plus the command's own estimate (a run times the same kernels at its start:
as long as this timing took), plus the command's fixed cost around them: the interpreter and the
imports, the set-up before the first step and the result file (``whole_command``). That fixed part is
measured by the commands themselves: every ``bohmpower exact`` and ``bohmpower run`` records it at its
end (``record_command_overhead``) in a per-machine file (``BOHMPOWER_CACHE_DIR``, default
``~/.cache/bohmpower``), and ``check`` adds the median of the last records of that command
(``command_overhead``); before any run on the machine it times the imports in a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: Records of each command's fixed cost kept in the per-machine file (the median is used).
OVERHEAD_RECORDS = 9
#: Extra steps of the longer timed propagator call of `exact_run_cost` (per-step cost by difference).
_STEP_SPAN = 4


def _cache_file() -> Path:
    root = os.environ.get("BOHMPOWER_CACHE_DIR") or Path.home() / ".cache" / "bohmpower"
    return Path(root) / "command_overhead.json"


def process_elapsed() -> float | None:
    """Seconds since this process started (Linux: /proc), None where that is not known."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = float(fields[19])  # field 22 of stat: start time in clock ticks after boot
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def size_class(points: int | None) -> str | None:
    """The record key's size class of a run with ``points`` grid values (n_x^N for an exact run):
    factors of 4. The fixed cost grows with the grid (the propagator's FFT plans, building the
    initial state, the result file): a 1D run and a 512^2 one differ by seconds."""
    if not points or points < 1:
        return None
    return f"~4^{int(round(np.log(float(points)) / np.log(4.0)))}"


def record_command_overhead(command: str, seconds: float, points: int | None = None) -> None:
    """Keep the fixed cost of one finished command ("exact" or "run") for later estimates: the
    process's whole wall time less the kernels' share the estimate models, under the command and
    under its size class (``size_class(points)``). Never fails a run."""
    if not (np.isfinite(seconds) and seconds >= 0):
        return
    path = _cache_file()
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
        cls = size_class(points)
        for key in (command,) + ((f"{command}:{cls}",) if cls else ()):
            rows = [float(v) for v in data.get(key, [])][-(OVERHEAD_RECORDS - 1):]
            data[key] = rows + [round(float(seconds), 3)]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except (OSError, ValueError, TypeError):
        pass


def command_overhead(command: str, points: int | None = None) -> tuple[float, str]:
    """The fixed cost of ``command`` on this machine [s] and where it comes from: the median of the
    last recorded runs of the same size class (``size_class(points)``), else of any size, or,
    before any, the imports of a run timed in a child process."""
    try:
        data = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        data = {}
    data = data if isinstance(data, dict) else {}
    cls = size_class(points)
    rows = data.get(f"{command}:{cls}", []) if cls else []
    if rows:
        return (float(np.median(rows)),
                f"median of this machine's last {len(rows)} run(s) of this size, {cls} grid values")
    rows = data.get(command, [])
    if rows:
        return float(np.median(rows)), f"median of this machine's last {len(rows)} run(s)"
    source = "the imports of a run, timed in a child process: no run recorded on this machine yet"
    if isinstance(data, dict) and data.get("imports"):
        return float(data["imports"][-1]), source
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import bohmpower.driver, bohmpower.io"],
                   capture_output=True, check=False)
    seconds = round(time.perf_counter() - t0, 3)  # as it is kept
    record_command_overhead("imports", seconds)
    return seconds, source



def fft_pair_seconds(shape: tuple[int, ...], workers: int = 1, repeats: int = 3) -> float:
    """Time one in-place forward + inverse complex FFT of ``shape`` (minimum of ``repeats``)."""
    import scipy.fft as sfft

    a = np.zeros(shape, dtype=np.complex128)
    a[(0,) * len(shape)] = 1.0
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a = sfft.fftn(a, overwrite_x=True, workers=workers)
        a = sfft.ifftn(a, overwrite_x=True, workers=workers)
        best = min(best, time.perf_counter() - t0)
    return best


def describe_estimates(config) -> str:
    """Resolved-model facts, memory and time estimates of the run ``config`` describes: the
    conditional-wavefunction engine for a ``run`` file (one with [method]), else the exact solver."""
    from bohmpower.model import build_model

    atomic = config.to_atomic() if config.units.system != "atomic" else config
    model, warnings = build_model(atomic, command="check", units=config.unit_system)
    warnings = list(warnings) + config.method_warnings()
    if atomic.method is not None and atomic.method.scheme == "interacting":
        return _describe_interacting(atomic, model, warnings)
    if atomic.method is not None:
        return _describe_cw(atomic, model, warnings)
    return _describe_exact(atomic, model, warnings)


def cw_run_cost(config, repeats: int = 12, clock=time.perf_counter, solver=None) -> dict:
    """Run time of the zeroth-order conditional-wavefunction run ``config`` on one core, from its own
    engine timed here.

    Builds the run's :class:`~bohmpower.driver.CWSolver` and one block of worlds as ``run_block`` does
    (the first ``min(BLOCK_SIZE, samples)`` sample ids), then times ``repeats`` engine steps with the
    block's estimator recording, after one warm-up step (numba loading). The run is n_steps such steps
    for every block, each block's cost in proportion to its worlds: seconds = start + n_steps x
    (time per step of the block) x samples / (worlds in the block).

    ``clock`` is the timer (wall time by default; ``time.process_time`` compares CPU times, which a
    shared machine's load does not disturb). ``solver``: the run's own CWSolver, when it exists
    already (`bohmpower run`), instead of building another.

    Returns
    -------
    dict: ``seconds``, ``block_step`` (seconds per step of the timed block), ``world_step``
    (per world), ``width`` (worlds in the timed block), ``samples``, ``n_steps``, ``block_build``
    (sampling, the ensemble, the recorder; paid once per block), ``start`` (paid once: the run's
    imports and the first step's extra time).
    """
    from bohmpower.driver import CWSolver
    from bohmpower.model.sampling import sample_configurations
    from bohmpower.power.recorder import BLOCK_SIZE, BlockRecorder

    from bohmpower.driver import _max_op

    t0 = clock()
    _max_op()  # what run() imports (mpi4py when installed), paid once by every `bohmpower run`
    t_import = clock() - t0
    solver = solver if solver is not None else CWSolver(config, workers=1)
    m = solver.model
    samples = max(1, solver.n_samples)
    width = min(BLOCK_SIZE, samples)
    ids = np.arange(width)
    def build_block(block_ids):
        X0 = sample_configurations(solver.kind, m.orbitals, m.grid.x, solver.seed, block_ids)
        rec = BlockRecorder(block_ids, solver.volumes, solver.time, solver.window_steps,
                            m.grid.x, solver.n_store, solver.identical)
        ens = solver._ensemble(X0, block_ids)
        rec.record(0, ens.state)
        return ens, rec

    t0 = clock()
    ens, rec = build_block(ids)
    build_first = clock() - t0
    n_steps = solver.time.n_steps
    k = min(repeats, max(1, n_steps - 1))
    t0 = clock()
    ens.step()
    rec.record(1, ens.state)
    first = clock() - t0
    t0 = clock()
    for step in range(2, 2 + k):
        ens.step()
        rec.record(min(step, n_steps), ens.state)
    block_step = (clock() - t0) / k
    # The first block's set-up also loads kernels (paid once per run): a second one is what every
    # further block costs. Built after the steps are timed, and dropped, so that the timed block
    # runs alone as in the run.
    del ens, rec
    t0 = clock()
    build_block(ids + width)
    build = clock() - t0
    n_blocks = -(-samples // BLOCK_SIZE)
    # once: numba loading, plans
    start = t_import + max(first - block_step, 0.0) + max(build_first - build, 0.0)
    seconds = start + n_blocks * build + n_steps * block_step * samples / width
    return {"seconds": seconds, "block_step": block_step, "world_step": block_step / width,
            "width": width, "samples": samples, "n_steps": n_steps, "start": start,
            "block_build": build}


def _describe_cw(atomic, model, warnings) -> str:
    from bohmpower.power.recorder import BLOCK_SIZE

    n, n_x = model.n_particles, model.grid.n_x
    exchange = bool(atomic.method.exchange)
    per_world = n * n if exchange else n
    samples = atomic.trajectories.count if atomic.trajectories else 0
    cost, total, rest = whole_command(lambda: cw_run_cost(atomic), "run", "start")
    block_bytes = min(BLOCK_SIZE, max(samples, 1)) * per_world * n_x * 16 * 3
    lines = [
        "conditional-wavefunction estimates:",
        f"  {per_world} conditional wavefunction(s) of {n_x} points per world "
        f"({'exchange: N^2' if exchange else 'no exchange: N'}), {samples} samples, "
        f"{atomic.time.n_steps:,} steps",
        f"  memory: about {block_bytes / 2**20:.0f} MiB per block of {BLOCK_SIZE} worlds",
        f"  run time: about {_human(total)} on one core: kernels "
        f"{_human(cost['seconds'])} (divide by the number of MPI ranks; timed here: "
        f"{cost['world_step'] * 1e6:.1f} us per world and step, on a block of {cost['width']} "
        f"worlds){rest}",
    ]
    if getattr(model, "absorber_report", None):
        lines.append(f"  absorbing layers: {model.absorber_report}")
    lines.extend(f"  warning: {w}" for w in warnings)
    return "\n".join(lines)


def interacting_run_cost(atomic, model, repeats: int = 3) -> dict:
    """Run time of an interacting-scheme run on one core, from its own ensemble timed here: one
    basis steps for all blocks (``basis_step``: propagation and matrices), the guidance costs
    ``world_step`` per measured world. Timed on ``repeats`` steps of one block after a warm-up
    step. ``atomic``: the run's config in atomic units; ``model`` built from it.

    Returns
    -------
    dict: ``seconds``, ``basis_step``, ``world_step``.
    """
    from bohmpower.cw.interacting import InteractingEnsemble
    from bohmpower.model.sampling import sample_configurations
    from bohmpower.power.recorder import BLOCK_SIZE

    mth = atomic.method
    samples = atomic.trajectories.count if atomic.trajectories else 0
    width = min(BLOCK_SIZE, max(samples, 1))
    kind = "slater" if model.statistics == "fermion" else "product"
    X0 = sample_configurations(kind, model.orbitals, model.grid.x, atomic.trajectories.seed,
                               range(width))
    ens = InteractingEnsemble(model, X0, mth.basis_size, atomic.trajectories.seed,
                              overlap_cutoff=mth.overlap_cutoff, norm_tolerance=1.0)
    ens.step()  # compiles the kernels
    before = dict(ens.timings)
    for _ in range(repeats):
        ens.step()
    spent = {k: (ens.timings[k] - before[k]) / repeats for k in before}
    basis_step = spent["basis"] + spent["matrices"]
    world_step = spent["guidance"] / width
    seconds = atomic.time.n_steps * (basis_step + world_step * samples)
    return {"seconds": seconds, "basis_step": basis_step, "world_step": world_step}


def run_command_seconds(solver) -> float:
    """The one-core run-time estimate of `bohmpower run`'s kernels, as `bohmpower check` prints it,
    timed on the run's own :class:`~bohmpower.driver.CWSolver` (a closed system): ``cw_run_cost``
    at zeroth order, ``interacting_run_cost`` for the interacting scheme."""
    config = solver.config  # only unit-free keys are read (counts, steps, seed, method)
    if config.method.scheme == "interacting":
        return interacting_run_cost(config, solver.model)["seconds"]
    return cw_run_cost(config, solver=solver)["seconds"]


def whole_command(cost_of, command: str, first_calls: str | None = None,
                  points: int | None = None) -> tuple[dict, float, str]:
    """Time ``cost_of()`` (one of the ``*_run_cost`` functions) and add to its kernels' estimate
    the rest of the command: the fixed cost recorded on this machine (``command_overhead``) and the
    in-run estimate, which times the same kernels as this call did (its duration, less the
    ``first_calls`` entry of the cost: numba loading and plans, which the kernels' estimate holds
    already). Returns the cost dict, the whole command's seconds and the line's closing words."""
    t0 = time.perf_counter()
    cost = cost_of()
    timing = time.perf_counter() - t0
    fixed, source = command_overhead(command, points)
    own = max(timing - (cost[first_calls] if first_calls else 0.0), 0.0)
    total = cost["seconds"] + fixed + own
    return cost, total, (f" + the command's fixed cost {_human(fixed)} (imports, set-up, result "
                         f"file; {source}) + its own estimate {_human(own)}")


def _describe_interacting(atomic, model, warnings) -> str:
    """Interacting scheme: one basis guides every block of worlds; its cost and the guidance cost per
    world are measured on this machine from three steps of one block (calibration, not a model)."""
    from bohmpower.cw.interacting import PAIR_CHUNK
    from bohmpower.power.recorder import BLOCK_SIZE

    mth = atomic.method
    samples = atomic.trajectories.count if atomic.trajectories else 0
    n_blocks = -(-samples // BLOCK_SIZE)
    cost, total, rest = whole_command(lambda: interacting_run_cost(atomic, model), "run")
    seconds, basis_step, per_world_step = (cost["seconds"], cost["basis_step"],
                                           cost["world_step"])
    n, n_x = model.n_particles, model.grid.n_x
    m = mth.basis_size
    # CWs and their propagation work space, the M x M x N x N overlaps and one-body terms, and the
    # pair densities' spectra of one chunk of the pair matrix (N^2 kinds at most)
    basis_bytes = m * n * n_x * 16 * 4 + 2 * m * m * n * n * 16 + PAIR_CHUNK * 2 * n_x * n * n * 16
    lines = [
        "conditional-wavefunction estimates (scheme interacting):",
        f"  basis: {m} worlds x {n} CWs of {n_x} points, held by every MPI rank "
        f"(it guides all {samples} samples, {n_blocks} block(s)); {atomic.time.n_steps:,} steps",
        f"  memory: about {basis_bytes / 2**20:.0f} MiB (basis and its matrices)",
        f"  run time: about {_human(total)} on one core: kernels {_human(seconds)} "
        f"(measured here per step: basis {basis_step * 1e3:.1f} ms, guidance "
        f"{per_world_step * 1e6:.0f} us per world; with P ranks the pair matrix, most of the basis "
        f"part, and the guidance divide by P){rest}",
    ]
    lines.extend(f"  warning: {w}" for w in warnings)
    return "\n".join(lines)


def exact_run_cost(config, workers: int | None = None, repeats: int = 3,
                   clock=time.perf_counter, solver=None) -> dict:
    """Run time of the exact run ``config`` from its own kernels, timed here.

    Builds the run's :class:`~bohmpower.driver.ExactSolver` and times, on a copy of its initial
    state, a few propagator steps, the grid observables as evaluated at a window-quadrature node
    (``diagnostics=False``) and at a stored frame (``diagnostics=True``), each the mean of
    ``repeats`` after one warm-up call. The run costs n_steps steps, one node evaluation per
    quadrature node that is not a frame, and one frame evaluation per stored frame (as
    ``ExactSolver.run`` does them). With ``[trajectories]`` the run steps one step at a time and
    moves the Bohmian ensemble at every step (guide update, ensemble step, estimators): both are
    timed the same way, on a throwaway ensemble of the run's size.

    ``clock``: the timer, as in `cw_run_cost`. ``solver``: the run's own ExactSolver, when it is
    about to run (its state is not changed: the timings step a copy), so nothing is built twice.

    Returns
    -------
    dict: ``seconds`` (the estimate), ``step``, ``node``, ``frame``, ``trajectory_step`` (seconds
    each; the last 0 without trajectories), ``n_steps``, ``n_nodes``, ``n_frames``, ``samples``,
    ``start`` (the run's own start-up: observables' setup, FFT plans, the ensemble's set-up),
    ``first_calls`` (the part of ``start`` that the first calls pay: numba loading, plans; a run
    in the same process after this has it paid already).
    """
    from bohmpower.driver import ExactSolver
    from bohmpower.exact.observables import FrameSetup, edge_terms, frame

    if solver is None:
        solver = ExactSolver(config, workers=workers)
    m = solver.model
    tc = solver.time_config
    t0 = clock()  # what run() builds: the observables' setup, the windows
    setup = FrameSetup(m, workers=solver.workers, fft_backend=m.config.numerics.fft_backend)
    windows = solver.windows()
    t_setup = clock() - t0
    frames = set(tc.frame_steps)
    n_nodes = len(windows.node_steps - frames)
    n_edge_nodes = len(windows.edge_steps - frames)
    # run() advances from one evaluation step to the next: n_calls calls of about `gap` steps
    # (each call pays its own merged half steps at both ends).
    n_calls = max(1, len((windows.node_steps | windows.edge_steps | frames) - {0}))
    gap = max(1, int(round(tc.n_steps / n_calls)))
    psi = solver.psi.copy()

    def best(fn) -> tuple[float, float]:
        t1 = clock()
        fn()
        first = clock() - t1
        runs = []
        for _ in range(repeats):
            t1 = clock()
            fn()
            runs.append(clock() - t1)
        # The mean, not the minimum: the run meets the machine's load as it is, not at its best.
        out = float(np.mean(runs))
        return out, first - out  # steady cost, one-off extra of the first call (plans)

    traj_step = 0.0
    if solver.trajectories is not None:
        # run() then advances one step at a time (the guide needs Psi at every step) and moves the
        # ensemble each step: time both, and building the ensemble (sampling, guide set-up) as
        # start-up. The throwaway ensemble steps on the copy of Psi.
        from bohmpower.driver import TrajectoryRun

        gap = 1
        t1 = clock()
        traj = TrajectoryRun(solver)
        t_setup += clock() - t1
        counter = iter(range(0, tc.n_steps + 1))  # the recorder starts at step 0

        def move():
            step = next(counter, None)
            if step is not None:
                traj.record(step, step * solver.dt, psi, None)

        # Frames store trajectories and windows close in the recorder: time a whole span of
        # steps (save_every and the window, at most 200) so their share is in the mean.
        span = int(min(tc.n_steps, max(repeats, tc.save_every, solver.window_steps), 200))
        t1 = clock()
        move()  # step 0: the recorder's first call
        extra_t = clock() - t1
        t1 = clock()
        for _ in range(span):
            move()
        traj_step = (clock() - t1) / span
        t_setup += max(extra_t - traj_step, 0.0)
    # Each advance call costs a + b g for g steps (its merged half steps at both ends, then b per
    # step). A run with few evaluations has long calls (gap ~ n_steps): time short calls of g1 < g2
    # steps, never the run's own (the estimate once propagated four whole runs).
    g1 = min(gap, 2)
    g2 = min(gap, g1 + _STEP_SPAN)
    c1, extra_p = best(lambda: solver.propagator.advance(psi, 0.0, g1))
    per_step = c1 / g1
    per_call = 0.0
    if g2 > g1:  # warm already (the g1 calls): no extra warm-up call
        runs = []
        for _ in range(repeats):
            t1 = clock()
            solver.propagator.advance(psi, 0.0, g2)
            runs.append(clock() - t1)
        c2 = float(np.mean(runs))
        per_step = max((c2 - c1) / (g2 - g1), 0.0) or c2 / g2
        per_call = max(c1 - per_step * g1, 0.0)
    call = per_call + per_step * gap  # one call of the run's length
    node, extra_n = (best(lambda: frame(psi, m, 0.0, diagnostics=False, setup=setup)) if n_nodes
                     else (0.0, 0.0))
    frm, extra_f = best(lambda: frame(psi, m, 0.0, diagnostics=True, setup=setup))
    edge, extra_e = (best(lambda: edge_terms(psi, m, 0.0, setup)) if n_edge_nodes
                     else (0.0, 0.0))
    start = t_setup + max(extra_n, 0.0) + max(extra_f, 0.0) + max(extra_e, 0.0)
    seconds = (start + n_calls * per_call + (per_step + traj_step) * tc.n_steps + n_nodes * node
               + n_edge_nodes * edge + len(frames) * frm)
    return {"seconds": seconds, "step": call / gap, "per_call": per_call, "node": node, "frame": frm,
            "edge_node": edge, "n_edge_nodes": n_edge_nodes,
            "trajectory_step": traj_step, "n_steps": tc.n_steps, "n_nodes": n_nodes,
            "n_frames": len(frames), "start": start, "first_calls": start - t_setup,
            "samples": 0 if solver.trajectories is None else int(solver.trajectories.count)}


def _describe_exact(atomic, model, warnings) -> str:
    from bohmpower.model.resolution import exact_memory_bytes

    n, n_x = model.n_particles, model.grid.n_x
    mem = exact_memory_bytes(n_x, n)
    cost, total, rest = whole_command(lambda: exact_run_cost(atomic), "exact", "first_calls",
                                      points=n_x**n)
    if cost["samples"]:
        with_traj = f"with {cost['samples']:,} exact Bohmian trajectories"
        traj_part = f"trajectories {cost['trajectory_step'] * 1e3:.2f} ms per step, "
    else:
        with_traj, traj_part = "without trajectories", ""
    lines = [
        "exact-run estimates:",
        f"  wavefunction: {n_x}^{n} = {n_x ** n:,} complex values "
        f"({16 * n_x ** n / 2**20:.1f} MiB per array)",
        f"  peak memory: about {mem / 2**20:.0f} MiB",
        _phase_line(model),
        f"  steps: {cost['n_steps']:,}; stored frames: {cost['n_frames']}; observables also at "
        f"{cost['n_nodes']:,} window-quadrature nodes"
        + (f", sharp-volume edge terms alone at {cost['n_edge_nodes']:,} more"
           if cost["n_edge_nodes"] else ""),
        f"  run time: about {_human(total)} on {atomic.numerics.fft_workers} FFT "
        f"thread(s), {with_traj}: kernels {_human(cost['seconds'])} (timed here: step "
        f"{cost['step'] * 1e3:.2f} ms, {traj_part}observables {cost['node'] * 1e3:.1f} ms at a "
        f"node, {cost['frame'] * 1e3:.1f} ms at a frame"
        + (f", {cost['edge_node'] * 1e3:.2f} ms for the edge terms alone"
           if cost["n_edge_nodes"] else "")
        + f"; start-up {cost['start']:.1f} s){rest}",
    ]
    if getattr(model, "absorber_report", None):
        lines.append(f"  absorbing layers: {model.absorber_report}")
    for w in warnings:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


def _phase_line(model) -> str:
    """The time-step rule as applied: phase per step against the limit of the run's order."""
    res = model.resolution
    return (f"  time step: {res.phase:.3g} rad per step; order {res.order} allows up to "
            f"{res.phase_limit:.3g} rad (dt <= {model.units.quantity(res.max_dt, 'time', digits=4)})")


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
