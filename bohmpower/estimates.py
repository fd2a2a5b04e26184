"""Memory and run-time estimates printed by ``bohmpower check`` (nothing is propagated)."""

from __future__ import annotations

import time

import numpy as np

#: Measured cost of one step in units of one forward plus one inverse N-d FFT of the same shape:
#: the split-operator step (~1.2) plus the volume terms evaluated every step for the window
#: averages (~4 steps' worth; scripts/bench_observables.py).
STEP_COST_IN_FFT_PAIRS = 6.0
#: Cost of the grid observables of one stored frame, in FFT pairs (about 20 one-axis transforms
#: on the 2x-refined grid).
FRAME_COST_IN_FFT_PAIRS = 25.0


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


#: Cost of one conditional-wavefunction step (propagation, guidance, health checks, estimators),
#: in units of one scipy.fft pair of one wavefunction timed from Python, calibrated on the built-in
#: demo (9 s measured) and examples/04 (about 4 min of one core measured).
CW_STEP_COST_IN_FFT_PAIRS = 1.8


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


def _describe_cw(atomic, model, warnings) -> str:
    from bohmpower.power.recorder import BLOCK_SIZE

    n, n_x = model.n_particles, model.grid.n_x
    exchange = bool(atomic.method.exchange)
    per_world = n * n if exchange else n
    samples = atomic.trajectories.count if atomic.trajectories else 0
    t_pair = fft_pair_seconds((n_x,), workers=1, repeats=20)
    seconds = (samples * atomic.time.n_steps * per_world * CW_STEP_COST_IN_FFT_PAIRS * t_pair)
    block_bytes = min(BLOCK_SIZE, max(samples, 1)) * per_world * n_x * 16 * 3
    lines = [
        "conditional-wavefunction estimates:",
        f"  {per_world} conditional wavefunction(s) of {n_x} points per world "
        f"({'exchange: N^2' if exchange else 'no exchange: N'}), {samples} samples, "
        f"{atomic.time.n_steps:,} steps",
        f"  memory: about {block_bytes / 2**20:.0f} MiB per block of {BLOCK_SIZE} worlds",
        f"  run time: about {_human(seconds)} on one core (divide by the number of MPI ranks; "
        f"one FFT pair of {n_x} points measured here: {t_pair * 1e6:.1f} us)",
    ]
    if getattr(model, "absorber_report", None):
        lines.append(f"  absorbing layers: {model.absorber_report}")
    lines.extend(f"  warning: {w}" for w in warnings)
    return "\n".join(lines)


def _describe_interacting(atomic, model, warnings) -> str:
    """Interacting scheme: one basis guides every block of worlds; its cost and the guidance cost per
    world are measured on this machine from three steps of one block (calibration, not a model)."""
    import time as _t

    from bohmpower.cw.interacting import PAIR_CHUNK, InteractingEnsemble
    from bohmpower.model.sampling import sample_configurations
    from bohmpower.power.recorder import BLOCK_SIZE

    mth = atomic.method
    samples = atomic.trajectories.count if atomic.trajectories else 0
    n_blocks = -(-samples // BLOCK_SIZE)
    width = min(BLOCK_SIZE, max(samples, 1))
    kind = "slater" if model.statistics == "fermion" else "product"
    X0 = sample_configurations(kind, model.orbitals, model.grid.x, atomic.trajectories.seed,
                               range(width))
    ens = InteractingEnsemble(model, X0, mth.basis_size, atomic.trajectories.seed,
                              overlap_cutoff=mth.overlap_cutoff, norm_tolerance=1.0)
    ens.step()  # compiles the kernels
    before = dict(ens.timings)
    for _ in range(3):
        ens.step()
    spent = {k: (ens.timings[k] - before[k]) / 3 for k in before}
    basis_step = spent["basis"] + spent["matrices"]
    per_world_step = spent["guidance"] / width
    seconds = atomic.time.n_steps * (basis_step + per_world_step * samples)
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
        f"  run time: about {_human(seconds)} on one core (measured here per step: basis "
        f"{basis_step * 1e3:.1f} ms, guidance {per_world_step * 1e6:.0f} us per world; with P "
        "ranks the pair matrix, most of the basis part, and the guidance divide by P)",
    ]
    lines.extend(f"  warning: {w}" for w in warnings)
    return "\n".join(lines)


def _describe_exact(atomic, model, warnings) -> str:
    from bohmpower.model.resolution import exact_memory_bytes

    n, n_x = model.n_particles, model.grid.n_x
    shape = (n_x,) * n
    mem = exact_memory_bytes(n_x, n)
    t_pair = fft_pair_seconds(shape, workers=atomic.numerics.fft_workers)
    n_steps = atomic.time.n_steps
    n_frames = atomic.time.n_frames
    seconds = t_pair * (STEP_COST_IN_FFT_PAIRS * n_steps + FRAME_COST_IN_FFT_PAIRS * n_frames)
    lines = [
        "exact-run estimates:",
        f"  wavefunction: {n_x}^{n} = {n_x ** n:,} complex values "
        f"({16 * n_x ** n / 2**20:.1f} MiB per array)",
        f"  peak memory: about {mem / 2**20:.0f} MiB",
        f"  steps: {n_steps:,}; stored frames: {n_frames}",
        f"  run time: about {_human(seconds)} on {atomic.numerics.fft_workers} FFT thread(s) "
        f"(one FFT pair measured here: {t_pair * 1e3:.2f} ms)",
    ]
    if getattr(model, "absorber_report", None):
        lines.append(f"  absorbing layers: {model.absorber_report}")
    for w in warnings:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
