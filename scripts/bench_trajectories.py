"""Benchmark of exact Bohmian trajectories and the ensemble estimators (a script, not a test).

Measures, side by side in one run and in the order the exact run loop (``driver.TrajectoryRun``) does
them, the time per step of

(a) the propagation step: ``SplitOperator.advance(psi, t, 1)``;
(b) the guide's grid derivatives: ``BohmianGuide.update(psi, t)``;
(c) the per-world trajectory advance and evaluation: ``BohmianEnsemble.step(guide)`` (Heun predictor
    and corrector, interpolation of psi and its derivatives, every per-electron quantity, weights);
(d) the estimators over all blocks, as the driver does it: one ``power.recorder.MultiBlockRecorder``
    over every fixed block of 64 sample ids, ``record(step, state)`` once per step (one
    ``EnsembleEstimator.record`` over all worlds with per-block statistics, plus the crossing count
    and stored trajectories);
    (d0) is the bare ``EnsembleEstimator.record`` of the same blocks with the same arrays, i.e. the part
    that ``power/estimators.py`` owns;
(e) the grid observables: ``exact.observables.frame(psi, model, t, diagnostics=False)``;

then the trajectory-steps per second, worlds * steps / ((b) + (c)), and the ratio (d) / ((b) + (c))
against the target of 20 %.

Case: N interacting (soft Coulomb) fermions, a Slater determinant of two (three) moving Gaussian
packets straddling the left edge of the sharp volume, a smoothed barrier, a linear-drop bias with a sine
profile, absorbing layers at both ends; volumes: one sharp, one smooth (tanh edges, s = 2 bohr);
dt = 0.05, frames every 20 steps and power windows of 20 steps (the SPEC.md example's cadence), with
the energy, density and current profiles on the grid. Initial worlds are drawn from |Psi0|^2 with
``sample_configurations("grid", ...)`` as the driver draws them. N = 2 on 512^2 with 1000 and 4000
worlds, N = 3 on 64^3 with 1000 worlds.

Rules (SPEC.md "Benchmarks"): one thread (run with NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1; FFT
workers = 1); the numba cache is warmed before anything is timed and the compile time is reported
separately (cold, in a fresh process with an empty NUMBA_CACHE_DIR, and loaded from the warm cache);
every component is timed in each of ``--repeats`` runs of 20 consecutive steps (one frame and window
boundary each), and the minimum over the runs of each component's mean per step is reported. The
estimators' cost is not uniform over the steps: a frame/window step evaluates the kernel profiles
(n_x Gaussians per electron and world); "(d) plain" and "(d) frame" give the two kinds of step, (d)
is their average over the 20-step cadence.

Usage::

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 python scripts/bench_trajectories.py
    ... --quick            # small grids, smoke test (seconds)
    ... --repeats 7 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Steps per timed run: one frame and one window boundary each (save_every = window = 20 steps).
CADENCE = 20
DT = 0.05
#: Target of the issue: the estimators cost at most this fraction of the trajectory time (b) + (c).
TARGET = 0.20

#: (N, n_x, cell length [bohr], worlds)
CASES = [(2, 512, 200.0, (1000, 4000)), (3, 64, 60.0, (1000,))]
QUICK_CASES = [(2, 192, 100.0, (256, 512)), (3, 64, 40.0, (256,))]


# ------------------------------------------------------------------------------------------- the case
def run_dict(n: int, n_x: int, length: float, worlds: int, n_steps: int) -> dict:
    """The run file (as a dict) of one benchmark case, atomic units."""
    half = 0.5 * length
    return {
        "schema": "bohmpower-run/1",
        "title": f"trajectory benchmark N={n} {n_x}^{n}",
        "units": {"system": "atomic"},
        "particles": {"count": n, "mass": 1.0, "statistics": "fermion"},
        "grid": {
            "x_min": -half,
            "x_max": half,
            "points": n_x,
            "boundary": "absorbing",
            "absorber_width": 0.15 * length,
        },
        "time": {"dt": DT, "t_end": DT * n_steps, "save_every": CADENCE, "window": DT * CADENCE},
        "potential": [
            {"kind": "barrier", "center": 0.0, "width": 4.0, "height": 0.25, "smoothing": 0.5}
        ],
        "field": [
            {
                "kind": "linear_drop",
                "bias": 0.1,
                "x_left": -0.1 * length,
                "x_right": 0.1 * length,
                "smoothing": 1.0,
                "time_profile": "sine",
                "frequency": 0.05,
                "phase": 0.0,
            }
        ],
        "interaction": {"kind": "soft_coulomb", "softening": 1.0, "relative_permittivity": 1.0},
        # Packets straddle the left edge of the sharp volume: electrons cross it during the timed steps.
        "initial": {
            "packet": [
                {
                    "center": -0.1 * length - 2.0 + 5.0 * i,
                    "width": max(0.03 * length, 2.0),
                    "wavenumber": 0.5,
                }
                for i in range(n)
            ]
        },
        "volume": [
            {"name": "sharp", "x_min": -0.1 * length, "x_max": 0.1 * length, "smoothing": 0.0},
            {"name": "smooth", "x_min": -0.3 * length, "x_max": 0.0, "smoothing": 2.0},
        ],
        "trajectories": {"count": worlds, "seed": 12345, "store": 0},
    }


def build(n: int, n_x: int, length: float, worlds: int, n_steps: int):
    """Model, propagator and Psi0 exactly as ``driver.ExactSolver`` builds them (one FFT worker)."""
    from bohmpower.config import parse_config
    from bohmpower.exact.propagator import SplitOperator
    from bohmpower.model import build_model

    config = parse_config(run_dict(n, n_x, length, worlds, n_steps), HERE).to_atomic()
    model, _warnings = build_model(config, command="exact")
    prop = SplitOperator.from_model(model, config.time.dt, order=config.numerics.order, workers=1)
    return config, model, prop, model.initial_state()


# ------------------------------------------------------------------------------------------- timing
def time_case(n: int, n_x: int, length: float, worlds: int, repeats: int) -> dict:
    """Time (a)-(e) for one case; minima over ``repeats`` runs of CADENCE steps of the mean per step."""
    import numpy as np

    from bohmpower.exact.observables import frame as grid_frame
    from bohmpower.exact.trajectories import BohmianEnsemble, BohmianGuide
    from bohmpower.model.sampling import sample_configurations
    from bohmpower.power.estimators import EnsembleEstimator

    try:
        from bohmpower.power.recorder import (
            BlockRecorder,
            MultiBlockRecorder,
            blocks_of,
            estimator_volumes,
            slice_state,
        )
    except ImportError:  # recorder not there: time the bare estimators only, blocks of 64 ids
        BlockRecorder = None

        def blocks_of(m):
            return [np.arange(s, min(s + 64, m)) for s in range(0, m, 64)]

    # Steps 0 and 1 warm up; steps 2 .. 1 + repeats*CADENCE are timed, each run of CADENCE steps
    # holding one multiple of CADENCE (a frame and a window boundary); n_steps is one cadence more so
    # that the run's last frame (always stored) is not among the timed steps.
    n_steps = CADENCE * (repeats + 1)
    config, model, prop, psi0 = build(n, n_x, length, worlds, n_steps)
    tc = config.time
    window_steps = round(tc.window_length / tc.dt)
    x = model.grid.x
    vols = (
        estimator_volumes(model.volumes, model.grid, with_global=False)
        if BlockRecorder is not None
        else list(model.volumes)
    )
    psi = psi0.copy()

    t0 = time.perf_counter()
    X0 = sample_configurations("grid", psi, x, int(config.trajectories.seed), np.arange(worlds))
    t_sample = time.perf_counter() - t0

    blocks = blocks_of(worlds)
    slices = [slice(int(b[0]), int(b[-1]) + 1) for b in blocks]
    recorders = (
        [MultiBlockRecorder(blocks, vols, tc, window_steps, x, 0, model.n_particles > 1)]
        if BlockRecorder is not None
        else []
    )
    bare = []
    for b in blocks:
        est = EnsembleEstimator(vols, tc.dt, tc.n_steps, tc.save_every, window_steps, grid_x=x)
        est.begin_block(b)
        bare.append(est)

    def record_driver(step, state):
        for rec in recorders:
            rec.record(step, state)

    def record_bare(step, s):
        for sl, est in zip(slices, bare):
            est.record(
                step,
                s.X[sl],
                s.v[sl],
                s.e[sl],
                s.field_power[sl],
                s.pair_power[sl],
                s.weight[sl],
                s.gamma_total[sl],
            )

    clock = time.perf_counter
    # Step 0 and the first step (FFTW planning, numba cache loads, first-call overheads): setup.
    t0 = clock()
    guide = BohmianGuide.from_model(model, workers=1)
    guide.update(psi, 0.0)
    ens = BohmianEnsemble(guide, X0)
    record_driver(0, ens.state)
    record_bare(0, ens.state)
    grid_frame(psi, model, 0.0, workers=1, diagnostics=False)
    t_setup0 = clock() - t0
    t0 = clock()
    prop.advance(psi, 0.0, 1)
    t_first_prop = clock() - t0
    guide.update(psi, tc.dt)
    ens.step(guide)
    record_driver(1, ens.state)
    record_bare(1, ens.state)
    grid_frame(psi, model, tc.dt, workers=1, diagnostics=False)
    t_setup1 = clock() - t0

    keys = ("a_prop", "b_update", "c_step", "d_record", "d0_bare", "e_frame")
    per_step = {k: np.zeros((repeats, CADENCE)) for k in keys}
    boundary = np.zeros((repeats, CADENCE), dtype=bool)
    step = 1
    t = step * tc.dt
    for r in range(repeats):
        for i in range(CADENCE):
            step += 1
            c0 = clock()
            t = prop.advance(psi, t, 1)
            c1 = clock()
            t = step * tc.dt  # the driver's time (no drift from repeated addition)
            guide.update(psi, t)
            c2 = clock()
            state = ens.step(guide)
            c3 = clock()
            if recorders:
                record_driver(step, state)
            c4 = clock()
            record_bare(step, state)
            c5 = clock()
            grid_frame(psi, model, t, workers=1, diagnostics=False)
            c6 = clock()
            for k, dtime in zip(keys, (c1 - c0, c2 - c1, c3 - c2, c4 - c3, c5 - c4, c6 - c5)):
                per_step[k][r, i] = dtime
            boundary[r, i] = step % CADENCE == 0
    assert np.all(boundary.sum(axis=1) == 1)

    out = {
        "N": n,
        "n_x": n_x,
        "worlds": worlds,
        "blocks": len(blocks),
        "alive_end": int(np.sum(ens.state.alive)),
        "sampling_s": t_sample,
        "setup_step0_s": t_setup0,
        "setup_step1_s": t_setup1,
        "first_propagator_step_s": t_first_prop,
        "recorder": BlockRecorder is not None,
    }
    for k in keys:
        out[k] = float(np.min(per_step[k].mean(axis=1)))
    for k in ("d_record", "d0_bare"):
        # Median over the plain steps of a run (the step after a frame may carry allocator noise).
        out[k + "_plain"] = float(
            min(np.median(row[~bnd]) for row, bnd in zip(per_step[k], boundary))
        )
        out[k + "_frame"] = float(np.min(per_step[k][boundary]))
    if not recorders:
        for k in ("d_record", "d_record_plain", "d_record_frame"):
            out[k] = out[k.replace("d_record", "d0_bare")]
    traj = out["b_update"] + out["c_step"]
    out["trajectory_steps_per_s"] = worlds / traj
    out["ratio_d"] = out["d_record"] / traj
    out["ratio_d0"] = out["d0_bare"] / traj
    out["ratio_d_plain"] = out["d_record_plain"] / traj
    out["full_step_s"] = sum(
        out[k] for k in ("a_prop", "b_update", "c_step", "d_record", "e_frame")
    )
    return out


# ------------------------------------------------------------------------------------------- compile
_PROBE = r"""
import json, time, numpy as np, sys
sys.path.insert(0, {here!r})
from bench_trajectories import build
from bohmpower.exact.observables import frame
from bohmpower.exact.trajectories import BohmianEnsemble, BohmianGuide
from bohmpower.model.sampling import sample_configurations
config, model, prop, psi = build(2, 64, 60.0, 64, 40)
X0 = sample_configurations("grid", psi, model.grid.x, 1, np.arange(64))
guide = BohmianGuide.from_model(model, workers=1)
res = {{}}
def stage(name, fn):
    a = time.perf_counter(); fn(); res.setdefault(name, []).append(time.perf_counter() - a)
ens = [None]
for rep in range(2):
    t = rep * 0.05
    stage("propagator", lambda: prop.advance(psi, t, 1))
    stage("trajectories", lambda: (guide.update(psi, t + 0.05),
                                   ens.__setitem__(0, BohmianEnsemble(guide, X0))))
    stage("observables", lambda: frame(psi, model, t, diagnostics=False))
print(json.dumps({{k: v[0] - v[1] for k, v in res.items()}}))
"""


def compile_times() -> dict:
    """First-call minus second-call time per stage, cold (empty NUMBA_CACHE_DIR) and from the cache."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
        code = _PROBE.format(here=str(HERE))
        for label in ("cold", "warm"):
            res = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            out[label] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def warm_cache() -> None:
    """Compile (or load) every numba kernel the timed cases use, in the default cache."""
    import numpy as np

    from bohmpower.exact.observables import frame
    from bohmpower.exact.trajectories import BohmianEnsemble, BohmianGuide

    for n in (2, 3):
        _config, model, prop, psi = build(n, 64, 40.0, 8, 40)
        prop.advance(psi, 0.0, 1)
        guide = BohmianGuide.from_model(model, workers=1)
        guide.update(psi, 0.05)
        ens = BohmianEnsemble(guide, np.zeros((8, n)) + np.arange(n))
        prop.advance(psi, 0.05, 1)
        guide.update(psi, 0.1)
        ens.step(guide)
        frame(psi, model, 0.1, diagnostics=False)


# ------------------------------------------------------------------------------------------- report
def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def report(rows: list[dict], comp: dict | None) -> None:
    ms = 1e3
    print()
    print("time per step [ms] (min over repeats of the mean over 20 steps; one thread)")
    hdr = (
        f"{'case':<16}{'worlds':>7}{'(a) prop':>10}{'(b) upd':>9}{'(c) worlds':>11}"
        f"{'(d) est':>9}{'(d0) bare':>10}{'(e) frame':>10}{'full':>8}"
        f"{'traj-steps/s':>14}{'(d)/(b+c)':>11}{'(d0)/(b+c)':>11}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        case = f"N={r['N']} {r['n_x']}^{r['N']}"
        print(
            f"{case:<16}{r['worlds']:>7}{r['a_prop'] * ms:>10.2f}{r['b_update'] * ms:>9.2f}"
            f"{r['c_step'] * ms:>11.2f}{r['d_record'] * ms:>9.2f}{r['d0_bare'] * ms:>10.2f}"
            f"{r['e_frame'] * ms:>10.2f}{r['full_step_s'] * ms:>8.1f}"
            f"{r['trajectory_steps_per_s']:>14.3g}{r['ratio_d']:>10.1%}{r['ratio_d0']:>11.1%}"
        )
    print()
    print(f"estimators per kind of step [ms] and ratio to (b)+(c) (target <= {TARGET:.0%})")
    for r in rows:
        case = f"N={r['N']} {r['n_x']}^{r['N']} W={r['worlds']}"
        traj = r["b_update"] + r["c_step"]
        verdict = "meets" if r["ratio_d"] <= TARGET else "MISSES"
        print(
            f"  {case:<22} blocks {r['blocks']:>3}: (d) plain {r['d_record_plain'] * ms:6.2f}"
            f" ({r['d_record_plain'] / traj:5.1%}), frame {r['d_record_frame'] * ms:7.2f}"
            f" ({r['d_record_frame'] / traj:6.1%}); (d0) plain {r['d0_bare_plain'] * ms:6.2f},"
            f" frame {r['d0_bare_frame'] * ms:7.2f}; average {r['ratio_d']:.1%}: {verdict} target"
        )
    print()
    print("per world-step [us]: (c) trajectory advance + evaluation, (d) estimators (plain step)")
    for r in rows:
        case = f"N={r['N']} {r['n_x']}^{r['N']} W={r['worlds']}"
        us = 1e6 / r["worlds"]
        print(
            f"  {case:<22} (c) {r['c_step'] * us:5.2f}   (d) {r['d_record_plain'] * us:5.2f}"
            f"   (d0) {r['d0_bare_plain'] * us:5.2f}   (b) per world {r['b_update'] * us:5.2f}"
        )
    print()
    print("one-off costs [s]")
    for r in rows:
        case = f"N={r['N']} {r['n_x']}^{r['N']} W={r['worlds']}"
        print(
            f"  {case:<22} sampling X0 {r['sampling_s']:.3f}; step 0 (guide, ensemble, estimators,"
            f" frame) {r['setup_step0_s']:.3f}; step 1 {r['setup_step1_s']:.3f} of which the first"
            f" propagator step (FFTW planning) {r['first_propagator_step_s']:.3f};"
            f" worlds alive at the end {r['alive_end']}"
        )
    if comp:
        print()
        print(
            "numba compile: first call minus second call in a fresh process (N=2 64^2 probe),"
            " cold = empty NUMBA_CACHE_DIR, warm = loaded from it [s]"
        )
        for label, d in comp.items():
            print(f"  {label:<5} " + ", ".join(f"{k} {v:.2f}" for k, v in d.items()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small grids (smoke test)")
    ap.add_argument("--repeats", type=int, default=5, help="runs of 20 steps per case (min taken)")
    ap.add_argument("--no-compile", action="store_true", help="skip the cold-compile probe")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    if args.repeats < 2:
        ap.error("--repeats must be >= 2")
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var) != "1":
            print(f"warning: {var} is not 1 (SPEC.md benchmarks are one thread)", file=sys.stderr)

    import numba
    import numpy as np
    import scipy

    print(
        f"bench_trajectories: {time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, numba {numba.__version__}; load average {_load()}"
    )
    comp = None if args.no_compile else compile_times()
    warm_cache()
    rows = []
    for n, n_x, length, worlds_list in QUICK_CASES if args.quick else CASES:
        for worlds in worlds_list:
            t0 = time.perf_counter()
            r = time_case(n, n_x, length, worlds, args.repeats)
            print(
                f"  done N={n} {n_x}^{n} W={worlds} in {time.perf_counter() - t0:.1f} s, "
                f"load average {_load()}",
                flush=True,
            )
            rows.append(r)
    report(rows, comp)
    print(f"\nload average at the end {_load()}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "compile": comp}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
