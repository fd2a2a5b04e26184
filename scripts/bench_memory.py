"""Peak memory of rank 0 against the number of samples (issue 11 item 10).

Usage::

    python scripts/bench_memory.py [--samples 640 2560 10240] [--ranks 2] [--src DIR]

Runs ``bohmpower run`` under ``mpiexec -n RANKS`` (one thread per rank) on a one-electron run whose
blocks are large (512 grid points, 81 stored frames: about 1 MB per block file), for each sample
count, and prints each rank's peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``,
read by the rank itself after the command returns) and the size of one block. ``--src`` runs the
package found in another source tree (e.g. an export of an older commit) for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

REPO = Path(__file__).resolve().parent.parent
RUN = """schema = "bohmpower-run/1"
title = "memory benchmark: one electron, large blocks"
[units]
system = "atomic"
[particles]
count = 1
mass = 1.0
statistics = "fermion"
[grid]
x_min = -60.0
x_max = 60.0
points = 512
boundary = "periodic"
[time]
dt = 0.05
t_end = 4.0
save_every = 1
[[initial.packet]]
center = -5.0
width = 2.0
wavenumber = 0.5
[[volume]]
name = "dev"
x_min = -3.0
x_max = 3.0
[trajectories]
count = {samples}
seed = 1
store = 4
[method]
exchange = false
"""


def worker(src: str, run_file: str, output: str) -> None:
    """One rank: the command line, then this rank's peak RSS as one JSON line."""
    sys.path.insert(0, src)
    from bohmpower.cli import main

    code = main(["run", run_file, "-o", output, "--overwrite", "-q", "--workers", "1"])
    try:
        from mpi4py import MPI

        rank = MPI.COMM_WORLD.Get_rank()
    except ImportError:
        rank = 0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB
    print(json.dumps({"rank": rank, "code": code, "maxrss_mb": rss_mb}), flush=True)


def measure(samples: int, ranks: int, src: str) -> dict:
    d = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    try:
        run = d / "run.toml"
        run.write_text(RUN.format(samples=samples))
        out = d / "out.h5"
        mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")
        cmd = [mpiexec, "-n", str(ranks), sys.executable, __file__, "--worker", src, str(run),
               str(out)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        if r.returncode != 0 or len(rows) != ranks:
            raise RuntimeError(f"run failed ({r.returncode}): {r.stderr[-2000:]}")
        blocks = sorted(Path(str(out) + ".checkpoint").glob("block-*.npz"))
        return {"samples": samples, "block_mb": blocks[0].stat().st_size / 1e6,
                **{f"rank{x['rank']}_mb": x["maxrss_mb"] for x in rows}}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main(argv=None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, nargs="+", default=[640, 2560, 10240])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--src", default=str(REPO), help="source tree holding the bohmpower package")
    args = ap.parse_args(argv)
    print(f"source {args.src}, {args.ranks} ranks")
    for m in args.samples:
        r = measure(m, args.ranks, args.src)
        ranks = "  ".join(f"rank {i}: {r[f'rank{i}_mb']:7.1f} MB" for i in range(args.ranks))
        print(f"M = {m:6d} ({m // 64:4d} blocks of {r['block_mb']:.2f} MB): peak RSS {ranks}",
              flush=True)


if __name__ == "__main__":
    main()
