"""Start-up of the commands a user types: the absorber's strength search and whole short commands.

Measured side by side in one run (a script, not a test):

- ``default_absorber_strength`` (the search ``build_model`` runs at every command start, and again
  per candidate width when it suggests a wider layer) with the numba sweep of
  ``bohmpower.model._absorber_kernels`` against its numpy twin (complex cos/sin, pairwise product),
  for layers of 12, 24 and 48 bohr; median of 5 calls each, and the largest difference of the results;
- whole commands in fresh processes, median of 3: ``bohmpower check`` and a 2-step
  ``bohmpower exact`` of the whole-command benchmark case (N = 2, 256^2, whose 12-bohr absorber draws
  the wider-layer suggestion) and ``bohmpower check`` of the built-in exact demo; with
  ``--baseline-tree DIR`` (e.g. ``git archive REV bohmpower | tar -x -C DIR``) the same commands run
  from that tree too, alternated.

Usage::

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python scripts/bench_startup.py [--baseline-tree DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_exact import COMMAND_RUN_FILE, THREAD_ENV  # noqa: E402  (the whole-command case)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "bohmpower" / "demo" / "exact_demo.toml"


def strength_search(repeats: int = 5) -> None:
    from bohmpower.model import _absorber_kernels as kern
    from bohmpower.model import absorber

    print("default_absorber_strength (mass 1, k up to 3.2 / bohr), median of", repeats, "calls")
    print(f"  {'width':>6s} {'numba [ms]':>11s} {'numpy twin [ms]':>16s} {'ratio':>6s} {'max |diff| of R+T':>18s}")
    fast = kern.path_rt_nb
    for width in (12.0, 24.0, 48.0):
        k_lo, k_hi = absorber.absorber_k_range(width, 3.2, [(1.0, 2.0)])
        times, results = {}, {}
        for name, fn in (("numba", fast), ("numpy", kern.path_rt_np)):
            kern.path_rt_nb = fn  # absorber calls the kernel through the module attribute
            try:
                absorber.default_absorber_strength(width, 1.0, k_lo, k_hi)
                ts = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    results[name] = absorber.default_absorber_strength(width, 1.0, k_lo, k_hi)
                    ts.append(time.perf_counter() - t0)
            finally:
                kern.path_rt_nb = fast
            times[name] = statistics.median(ts)
        diff = abs(results["numba"][1] - results["numpy"][1])
        print(f"  {width:6.0f} {times['numba'] * 1e3:11.1f} {times['numpy'] * 1e3:16.1f} "
              f"{times['numpy'] / times['numba']:6.1f} {diff:18.1e}")


def commands(baseline: str | None, repeats: int = 3) -> None:
    trees = [("this checkout", None)] + ([("baseline tree", baseline)] if baseline else [])
    with tempfile.TemporaryDirectory() as d:
        case = Path(d) / "case.toml"
        case.write_text(COMMAND_RUN_FILE.format(n_x=256, dt=0.02, t_end=0.04, save_every=2, order=2,
                                                extra=""))
        cmds = {"check, bench case": ["check", str(case)],
                "exact, bench case, 2 steps": ["exact", str(case), "-o", str(Path(d) / "o.h5"),
                                               "--overwrite", "-q"],
                "check, built-in exact demo": ["check", str(DEMO)]}
        walls: dict = {}
        for _ in range(repeats):
            for label, args in cmds.items():
                for tree_label, tree in trees:
                    env = dict(os.environ, **THREAD_ENV)
                    if tree:
                        env["PYTHONPATH"] = str(tree)
                    t0 = time.perf_counter()
                    subprocess.run([sys.executable, "-m", "bohmpower", *args], cwd=d, env=env,
                                   check=True, capture_output=True)
                    walls.setdefault((label, tree_label), []).append(time.perf_counter() - t0)
        print(f"\nwhole commands, wall [s], median of {repeats} (fresh processes, alternated)")
        for label in cmds:
            row = "  ".join(f"{t}: {statistics.median(walls[(label, t)]):.2f}" for t, _ in trees)
            print(f"  {label:28s} {row}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-tree", default=None, metavar="DIR")
    args = ap.parse_args()
    print(f"numpy {np.__version__}; load {os.getloadavg()}")
    strength_search()
    commands(args.baseline_tree)


if __name__ == "__main__":
    main()
