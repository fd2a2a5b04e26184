"""Cost per step of the interacting scheme against basis size M, electrons N and grid size n_x,
and against the exact solver's step on the same grid, measured side by side in one run.

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python scripts/bench_icwf.py

For each (N, n_x, M) it builds the scheme on a strong three-body (or two-body) collision, takes one
step to compile, then times ``--steps`` steps and splits the time with the ensemble's own timers into
the basis part (CW propagation plus the matrices S, K, the pseudo-inverse and the exponential; the pair
matrix in it is shared over MPI ranks) and the guidance per measured world (paid once per world: four
evaluations of Psi per step, predictor, corrector and the two for d_t Q). The last column is the data
each rank receives per step under MPI (the allgather of the pair matrix's a <= b entries). The exact solver's step
(``SplitOperator.advance``, order 2) is timed on the same grid for N = 2 and 3. Prints medians of
``--repeats`` repeats, the ratio basis-step / exact-step, and the ratio of a whole step with 1024
measured worlds on one rank (basis plus 1024 guidance costs) to the exact step.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bohmpower.config import parse_config  # noqa: E402
from bohmpower.cw.interacting import InteractingEnsemble  # noqa: E402
from bohmpower.driver import ExactSolver  # noqa: E402
from bohmpower.model import build_model  # noqa: E402


def config(n: int, n_x: int, method: bool):
    packets = [{"center": -12.0, "width": 2.5, "wavenumber": 0.9},
               {"center": 12.0, "width": 2.5, "wavenumber": -0.9},
               {"center": 0.0, "width": 2.5, "wavenumber": 0.0}][:n]
    d = {
        "schema": "bohmpower-run/1", "title": "bench", "units": {"system": "atomic"},
        "particles": {"count": n, "mass": 1.0, "statistics": "fermion"},
        "grid": {"x_min": -40.0, "x_max": 40.0, "points": n_x, "boundary": "periodic"},
        "time": {"dt": 0.05, "t_end": 1.0, "save_every": 20},
        "interaction": {"kind": "soft_coulomb", "softening": 1.0},
        "initial": {"packet": packets},
        "volume": [{"name": "c", "x_min": -3.0, "x_max": 3.0}],
    }
    if method:
        d["trajectories"] = {"count": 64}
        d["method"] = {"scheme": "interacting", "exchange": True}
    return parse_config(d, Path.cwd())


def icwf_step(n, n_x, m, steps, worlds=64):
    cfg = config(n, n_x, True)
    model = build_model(cfg, command="run")[0]
    rng = np.random.default_rng(0)
    X0 = np.sort(rng.uniform(-14, 14, size=(worlds, n)), axis=1)
    ens = InteractingEnsemble(model, X0, m, seed=1, norm_tolerance=1.0)
    ens.step()
    before = dict(ens.timings)
    for _ in range(steps):
        ens.step()
    spent = {k: (ens.timings[k] - before[k]) / steps for k in before}
    return spent["basis"] + spent["matrices"], spent["guidance"] / worlds


def exact_step(n, n_x, steps):
    solver = ExactSolver(config(n, n_x, False))
    psi = solver.psi
    solver.propagator.advance(psi, 0.0, 1)
    t0 = time.perf_counter()
    solver.propagator.advance(psi, 0.0, steps)
    return (time.perf_counter() - t0) / steps


def mpi_runs(m: int, samples: int, repeats: int) -> dict:
    """Median wall time of the whole `bohmpower run` (the N = 2, 256-point case of ``config`` with
    M basis worlds, t_end = 5: 100 steps) on 1 and 2 MPI ranks, interleaved, start-up included (the same in both); the
    results of both rank counts must agree to round-off (1e-12 relative)."""
    import shutil
    import subprocess
    import tempfile

    from bohmpower.io import read_result

    tmp = Path(tempfile.mkdtemp())
    run = tmp / "run.toml"
    cfg = config(2, 256, True).replace_section("method", basis_size=m)
    run.write_text(cfg.replace_section("time", t_end=5.0).to_toml())
    mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    times: dict = {1: [], 2: []}
    first = None
    for _ in range(repeats):
        for p in (1, 2):
            out = tmp / f"out{p}.h5"
            t0 = time.perf_counter()
            subprocess.run([mpiexec, "-n", str(p), sys.executable, "-m", "bohmpower", "run", str(run),
                            "-o", str(out), "--overwrite", "-q", "--samples", str(samples)],
                           env=env, check=True, capture_output=True)
            times[p].append(time.perf_counter() - t0)
            e = read_result(out)["volumes"]["c"]["data"]["energy"]
            first = e if first is None else first
            assert np.allclose(e, first, rtol=1e-12, atol=0), "1 and 2 ranks differ"
    return {p: float(np.median(v)) for p, v in times.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", nargs="*", default=["2:128:8,16,32,64", "2:256:16,64", "3:128:8,16,32"])
    ap.add_argument("--mpi", type=int, nargs=2, metavar=("M", "SAMPLES"),
                    help="instead: the whole `bohmpower run` on 1 and 2 MPI ranks")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    if args.mpi:
        t = mpi_runs(args.mpi[0], args.mpi[1], args.repeats)
        print(f"M = {args.mpi[0]}, {args.mpi[1]} samples, N = 2, 256 points, 100 steps: 1 rank "
              f"{t[1]:.1f} s, 2 ranks {t[2]:.1f} s, speed-up {t[1] / t[2]:.2f} (results equal to "
              f"round-off); load average {os.getloadavg()[0]:.2f} at end")
        return
    print(f"{'N':>2} {'n_x':>5} {'M':>4} {'basis ms/step':>14} {'guidance us/world':>18} "
          f"{'exact ms/step':>14} {'basis/exact':>12} {'1024 worlds/exact':>18} {'MPI MB/step':>12}")
    for case in args.cases:
        n, n_x, sizes = case.split(":")
        n, n_x = int(n), int(n_x)
        ex = float(np.median([exact_step(n, n_x, args.steps) for _ in range(args.repeats)]))
        for m in map(int, sizes.split(",")):
            runs = [icwf_step(n, n_x, m, args.steps) for _ in range(args.repeats)]
            b = float(np.median([r[0] for r in runs]))
            g = float(np.median([r[1] for r in runs]))
            # with MPI: every rank receives the pair matrix's a <= b entries (complex128) per step
            mb = m * (m + 1) / 2 * 16 / 1e6
            # the whole step of a run with 1024 measured worlds on one rank, over the exact step
            whole = (b + 1024 * g) / ex
            print(f"{n:>2} {n_x:>5} {m:>4} {b * 1e3:>14.1f} {g * 1e6:>18.1f} {ex * 1e3:>14.2f} "
                  f"{b / ex:>12.2f} {whole:>18.2f} {mb:>12.3f}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
