"""Rank scaling of `bohmpower sweep` (issue "Open devices", performance part).

Usage::

    python scripts/bench_sweep.py [--points 4] [--worlds 16] [--repeats 3]

Runs the same sweep (the single barrier of the tests on 128 points, t_end 2800 atomic units,
``--points`` biases, ``--worlds`` worlds per point) with 1 rank (plain ``python``) and with 2 ranks
(``mpiexec -n 2``: two groups of one rank, each running whole points), one thread per rank, the
1- and 2-rank runs interleaved so that they see the same machine load, after a warm-up run that
fills the numba cache. It prints, per repeat and as medians:

- the whole command, launch to exit, and the speed-up of 2 ranks over 1;
- the compute inside it: the sum of the points' ``wall_time`` (result files) on the busiest rank;
- the rest, the whole command minus that compute: imports, MPI start, each point's set-up
  (model, absorbing-layer search, Landauer references; it runs on the point's rank too), the
  figure;
- the load average of the machine before each run.

A sweep of P ranks over K points runs ceil(K / P) points on the busiest rank, so with K a multiple of
P the compute speed-up should be P.
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import copy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MPIEXEC = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")


def sweep_once(run_file: Path, out: Path, ranks: int, points: int) -> tuple[float, float]:
    """(whole command, compute on the busiest rank) in seconds."""
    import h5py

    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "bohmpower", "sweep", str(run_file), "--bias",
           "0.01:0.01:1" if points == 1 else f"0.01:0.03:{points}", "-o", str(out)]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    start = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=dict(os.environ))
    wall = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"sweep failed ({' '.join(cmd)}):\n{r.stderr}")
    files = sorted(out.glob("*.bias*.h5"), key=lambda p: float(p.stem.split("bias")[1]))
    times = []
    for f in files:
        with h5py.File(f, "r") as h:
            times.append(float(h.attrs["wall_time"]))
    busiest = max(sum(times[g::ranks]) for g in range(ranks))  # point i ran on rank i mod P
    return wall, busiest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=4)
    ap.add_argument("--worlds", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from tests.conftest import write_run_file
    from tests.test_devices_open import OPEN

    d = copy.deepcopy(OPEN)
    d["trajectories"]["count"] = args.worlds
    work = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    run_file = write_run_file(work / "dev.toml", d)
    sweep_once(run_file, work / "warm", 1, 1)  # numba cache
    rows = {1: [], 2: []}
    for rep in range(args.repeats):
        for ranks in (1, 2):
            load = os.getloadavg()[0]
            wall, busy = sweep_once(run_file, work / f"p{ranks}", ranks, args.points)
            rows[ranks].append((wall, busy, load))
            print(f"repeat {rep + 1}, {ranks} rank(s): whole command {wall:.2f} s, compute on the "
                  f"busiest rank {busy:.2f} s, outside the run loops {wall - busy:.2f} s "
                  f"(load before {load:.2f})", flush=True)
    med = {p: [statistics.median(x[i] for x in rows[p]) for i in range(3)] for p in rows}
    print(f"\nmedians over {args.repeats} repeats, {args.points} points of {args.worlds} worlds "
          f"on {os.cpu_count()} cores:")
    for p in (1, 2):
        w, b, load = med[p]
        print(f"  {p} rank(s): whole command {w:.2f} s, compute {b:.2f} s, rest {w - b:.2f} s, "
              f"load {load:.2f}")
    print(f"  speed-up of 2 ranks: whole command {med[1][0] / med[2][0]:.2f}x, compute "
          f"{med[1][1] / med[2][1]:.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
