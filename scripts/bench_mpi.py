"""Benchmark of MPI ensemble runs (issue "MPI ensemble runs at cluster scale", performance part).

Usage::

    python scripts/bench_mpi.py [--quick] [--repeats R] [--json FILE]

Runs ``bohmpower run`` on the same run file with 1 rank (plain ``python``, the serial baseline a user
would run) and with 2 ranks (``mpiexec -n 2`` of the ``mpich`` wheel), one thread per rank in both
(``NUMBA_NUM_THREADS=OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=1``, ``--workers 1``), after a warm-up run
that loads the numba cache, and prints:

- the speed-up of 2 ranks over 1 (whole command, launch to exit; and inside ``CWSolver.run``),
  minimum over the repeats, 1- and 2-rank runs interleaved so they see the same machine load;
- where each rank's time goes: compute (``CWSolver.run_block``), collectives (every ``bcast``,
  ``allreduce`` and ``gather`` the run makes, waits included), checkpoint I/O, rank 0's merge and
  HDF5 write, start-up (interpreter, imports, MPI init, model build);
- the bytes each rank sends in collectives (pickled payloads, as mpi4py's lowercase methods send);
- a micro-benchmark under ``mpiexec -n 2``: allreduce latency, gather time against payload,
  pickling and unpickling rates, rank 0's merge time per block, from the run's own checkpoint blocks;
- a projection of the parallel efficiency to 100 and 1000 ranks from these numbers.

The machine is shared: before each run the script waits (``--quiet-cores``, ``--quiet-timeout``)
until the other processes use less than 0.3 core, and it reports, for each run, how many cores they
used during it (/proc/stat busy time minus this script's children's CPU time).

Each rank is instrumented from outside the package: the script re-runs itself as a worker
(``--worker``) that wraps ``parallel.world_comm`` (a communicator proxy that times every collective
and measures its pickled payload), ``CWSolver.run_block`` / ``run`` / ``__init__``, the
``Checkpoint`` methods, ``recorder.OrderedMerge.add`` and ``io.write_cw_result``, then calls
``bohmpower.cli.main(["run", ...])``: the code path of ``python -m bohmpower run``.
"""

from __future__ import annotations

import os

# One thread per rank, set before anything imports numpy or numba (SPEC.md "Benchmarks").
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import math
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MPIEXEC = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")

# ----------------------------------------------------------------------------------- run files

RUN_TOML = """\
schema = "bohmpower-run/1"
title = "bench_mpi: two interacting fermions through a biased barrier, exchange {exchange}"

[units]
system = "atomic"

[particles]
count = 2
mass = 1.0
statistics = "fermion"

[grid]
x_min = -80.0
x_max = 80.0
points = {points}
boundary = "absorbing"
absorber_width = 20.0

[time]
dt = 0.05
t_end = {t_end}
save_every = 10

[[potential]]
kind = "barrier"
center = 0.0
width = 2.0
height = 0.4
smoothing = 0.3

[[field]]
kind = "linear_drop"
bias = 0.3
x_left = -10.0
x_right = 10.0
smoothing = 1.0
time_profile = "turn_on"
t_on = 5.0

[interaction]
kind = "soft_coulomb"
softening = 1.0

[[initial.packet]]
center = -20.0
width = 4.0
wavenumber = 1.2

[[initial.packet]]
center = -36.0
width = 4.0
wavenumber = 1.0

[[volume]]
name = "left"
x_min = -40.0
x_max = -10.0

[[volume]]
name = "barrier"
x_min = -3.0
x_max = 3.0
smoothing = 0.5

[[volume]]
name = "right"
x_min = 10.0
x_max = 30.0

[trajectories]
count = {samples}
seed = 2016
store = 12

[method]
exchange = {exchange}
"""


def write_run_file(folder: Path, exchange: bool, points: int, t_end: float, samples: int) -> Path:
    path = folder / f"run_ex{int(exchange)}.toml"
    path.write_text(RUN_TOML.format(exchange=str(exchange).lower(), points=points, t_end=t_end,
                                    samples=samples))
    return path


# --------------------------------------------------------------------------- worker (one rank)


class Stats:
    """Per-rank accumulators: seconds, calls and bytes per category."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self.bytes_sent = defaultdict(int)
        self.samples = defaultdict(list)  # category -> individual durations [s]

    def add(self, key: str, dt: float, keep: bool = False) -> None:
        self.seconds[key] += dt
        self.calls[key] += 1
        if keep:
            self.samples[key].append(dt)


def _pickled_size(obj) -> int:
    # mpi4py's lowercase collectives pickle with the highest protocol, in band.
    return len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


class TimedComm:
    """Communicator proxy: times each collective (waits included) and counts the bytes it sends.

    Bytes are the pickled payload this rank hands to MPI: for ``gather`` a non-root rank sends its
    object once and the root sends nothing; for ``bcast`` the root's object goes to P - 1 ranks
    (counted once: the tree algorithm spreads the copies); ``allreduce`` payloads are counted once
    per call (mpi4py reduces pickled objects along a tree, then broadcasts the result).
    """

    def __init__(self, comm, stats: Stats):
        self._comm = comm
        self._stats = stats
        self.rank = comm.rank
        self.size = comm.Get_size()

    def __getattr__(self, name):
        return getattr(self._comm, name)

    def _timed(self, kind: str, nbytes: int, fun, *args, **kw):
        self._stats.bytes_sent[kind] += nbytes
        t0 = time.perf_counter()
        out = fun(*args, **kw)
        self._stats.add("coll/" + kind, time.perf_counter() - t0, keep=True)
        return out

    def allreduce(self, value, op=None):
        return self._timed("allreduce", _pickled_size(value) if self.size > 1 else 0,
                           self._comm.allreduce, value, op=op)

    def bcast(self, obj, root: int = 0):
        n = _pickled_size(obj) if self.size > 1 and self.rank == root else 0
        return self._timed("bcast", n, self._comm.bcast, obj, root=root)

    def gather(self, obj, root: int = 0):
        n = _pickled_size(obj) if self.size > 1 and self.rank != root else 0
        if self.size > 1:
            self._stats.bytes_sent["gather_payload_max"] = max(
                self._stats.bytes_sent["gather_payload_max"], _pickled_size(obj))
        return self._timed("gather", n, self._comm.gather, obj, root=root)


def _wrap(owner, name: str, key: str, stats: Stats, keep: bool = False) -> None:
    orig = getattr(owner, name)

    def wrapper(*args, **kw):
        t0 = time.perf_counter()
        try:
            return orig(*args, **kw)
        finally:
            stats.add(key, time.perf_counter() - t0, keep=keep)

    setattr(owner, name, wrapper)


def worker(args) -> int:
    """One rank of an instrumented ``bohmpower run`` (see the module docstring)."""
    t_main = time.time()
    import numpy as np  # noqa: F401

    import bohmpower.checkpoint as ck
    import bohmpower.driver as drv
    import bohmpower.io as bio
    import bohmpower.parallel as par
    import bohmpower.power.recorder as rec
    from bohmpower import cli

    t_imported = time.time()
    stats = Stats()
    holder = {}
    orig_world = par.world_comm

    def timed_world():
        t0 = time.perf_counter()
        comm = TimedComm(orig_world(), stats)
        stats.add("mpi_init", time.perf_counter() - t0)
        holder["comm"] = comm
        return comm

    par.world_comm = timed_world
    _wrap(drv.CWSolver, "run_block", "compute", stats, keep=True)
    _wrap(drv.CWSolver, "run", "solver_run", stats)
    _wrap(drv.CWSolver, "__init__", "solver_init", stats)
    for name in ("save_block", "write_manifest", "check", "load_blocks", "exists", "remove"):
        _wrap(ck.Checkpoint, name, "checkpoint/" + name, stats, keep=name == "save_block")
    _wrap(rec.OrderedMerge, "add", "merge", stats)  # rank 0 merges block by block as they arrive
    _wrap(bio, "write_cw_result", "hdf5_write", stats)

    t0 = time.perf_counter()
    code = cli.main(["run", str(args.run_file), "-o", str(args.output), "--overwrite",
                     "--workers", "1", "-q"])
    stats.add("cmd_run", time.perf_counter() - t0)
    comm = holder["comm"]
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "rank": comm.rank, "size": comm.size, "exit": code,
        "t_launch": args.t_launch, "t_main": t_main, "t_imported": t_imported,
        "t_end": time.time(), "cpu": ru.ru_utime + ru.ru_stime, "maxrss_kb": ru.ru_maxrss,
        "seconds": dict(stats.seconds), "calls": dict(stats.calls),
        "bytes_sent": dict(stats.bytes_sent), "samples": dict(stats.samples),
    }
    Path(f"{args.json_prefix}.rank{comm.rank}.json").write_text(json.dumps(out))
    return code


# ------------------------------------------------------------- micro-benchmark (mpiexec -n 2)


def micro(args) -> int:
    """Latency of the run's collectives and rank 0's per-block costs, from real checkpoint blocks."""
    import numpy as np
    from mpi4py import MPI

    from bohmpower.checkpoint import Checkpoint, run_identity
    from bohmpower.config import load_config
    from bohmpower.driver import CWSolver
    from bohmpower.power.recorder import BlockResult, merge_blocks

    comm = MPI.COMM_WORLD
    rank = comm.rank
    # the run's own identity: block files carry its digest and others are refused
    identity = run_identity(load_config(args.run_file))
    blocks = list(Checkpoint(Path(args.output), identity).load_blocks().values())
    blocks.sort(key=lambda r: r.sums.first_id)
    out: dict = {"size": comm.size}

    def coll_time(fun, n_iter: int, reps: int = 5) -> float:
        best = math.inf
        for _ in range(reps):
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(n_iter):
                fun()
            best = min(best, (time.perf_counter() - t0) / n_iter)
        return comm.allreduce(best, op=MPI.MAX)

    out["allreduce_s"] = coll_time(lambda: comm.allreduce(1, op=MPI.MAX), 2000)
    out["bcast_small_s"] = coll_time(lambda: comm.bcast([1, 2, 3], root=0), 2000)
    out["barrier_s"] = coll_time(comm.Barrier, 2000)
    # Gather of k whole blocks per rank (what the end of a run sends), timed on rank 0 (it
    # receives and unpickles everything).
    gathers = []
    for k in (1, 2, 4, 8):
        items = [blocks[i % len(blocks)] for i in range(k)]
        best = math.inf
        for _ in range(5):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.gather(items, root=0)
            best = min(best, time.perf_counter() - t0)
        gathers.append({"blocks_per_rank": k, "bytes_per_rank": _pickled_size(items),
                        "seconds_rank0": comm.bcast(best, root=0)})
    out["gather"] = gathers
    if rank == 0:
        payload = pickle.dumps(blocks, protocol=pickle.HIGHEST_PROTOCOL)
        t_dump = min(_timeit(lambda: pickle.dumps(blocks, protocol=pickle.HIGHEST_PROTOCOL))
                     for _ in range(5))
        t_load = min(_timeit(lambda: pickle.loads(payload)) for _ in range(5))
        out["pickle_bytes_per_block"] = len(payload) / len(blocks)
        out["pickle_s_per_byte"] = t_dump / len(payload)
        out["unpickle_s_per_byte"] = t_load / len(payload)
        # Merge cost per block: n copies of the run's blocks relabelled to consecutive ids (the
        # arithmetic does not depend on the values); no stored trajectories (they sit in block 0).
        solver = CWSolver(load_config(args.run_file), workers=1)
        n_copy = 64
        size = blocks[0].sums.n_samples
        many = []
        for i in range(n_copy):
            s = blocks[i % len(blocks)].sums.copy()
            s.first_id, s.last_id = i * size, (i + 1) * size - 1
            many.append(BlockResult(s, {}, 0))
        m = solver.model
        t_merge = min(_timeit(lambda: merge_blocks(many, solver.volumes, solver.time,
                                                   solver.window_steps, m.grid.x, solver.n_store,
                                                   m.n_particles)) for _ in range(3))
        out["merge_s_per_block"] = t_merge / n_copy
        out["n_blocks_in_checkpoint"] = len(blocks)
        out["block_file_bytes"] = float(np.mean(
            [p.stat().st_size for p in Path(str(args.output) + ".checkpoint").glob("block-*.npz")]))
        Path(args.json_prefix + ".micro.json").write_text(json.dumps(out))
    return 0


def _timeit(fun) -> float:
    t0 = time.perf_counter()
    fun()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------- parent


def loadavg() -> tuple[float, float, float]:
    return tuple(float(v) for v in Path("/proc/loadavg").read_text().split()[:3])


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (/proc/stat, every core)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_cores: float, timeout: float, window: float = 1.0) -> float:
    """Wait until the other processes use less than ``max_cores`` cores over ``window`` seconds
    (while this script is idle the machine's busy time is theirs); returns the last measurement.
    Gives up after ``timeout`` seconds (the run then starts anyway, and its load is reported)."""
    start = time.perf_counter()
    while True:
        b0 = machine_busy_seconds()
        time.sleep(window)
        cores = (machine_busy_seconds() - b0) / window
        if cores < max_cores or time.perf_counter() - start > timeout:
            return cores


def children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def launch(ranks: int, mode: list[str], env: dict) -> tuple[float, int, str]:
    """Run this script as a worker on ``ranks`` ranks; (wall seconds, exit code, stderr)."""
    t_launch = time.time()
    cmd = [sys.executable, str(Path(__file__).resolve()), *mode, "--t-launch", repr(t_launch)]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600,
                          check=False)
    return time.perf_counter() - t0, proc.returncode, proc.stderr


def one_run(folder: Path, run_file: Path, ranks: int, env: dict, tag: str,
            quiet: tuple[float, float] | None = None) -> dict:
    """One instrumented run on a fresh output; returns the parent's wall time and every rank's stats."""
    out = folder / f"{tag}.h5"
    ck = Path(str(out) + ".checkpoint")
    if ck.exists():
        shutil.rmtree(ck)
    prefix = str(folder / tag)
    if quiet is not None:
        wait_quiet(*quiet)
    load_before = loadavg()
    busy0, own0 = machine_busy_seconds(), children_cpu_seconds()
    wall, code, err = launch(ranks, ["--worker", str(run_file), str(out), prefix], env)
    # Cores the other developers' processes used on average during this run: the machine's busy
    # time minus our own processes' (mpiexec, its proxy and the ranks are all reaped children).
    foreign = (machine_busy_seconds() - busy0 - (children_cpu_seconds() - own0)) / wall
    if code != 0:
        raise RuntimeError(f"{tag}: exit {code}\n{err[-3000:]}")
    rank_stats = [json.loads(Path(f"{prefix}.rank{r}.json").read_text()) for r in range(ranks)]
    return {"wall": wall, "ranks": rank_stats, "load_before": load_before, "load_after": loadavg(),
            "foreign_cores": max(foreign, 0.0), "output": str(out)}


def breakdown(run: dict) -> list[dict]:
    """Per rank: seconds per category, partitioning launch-to-exit of that rank."""
    rows = []
    for r in run["ranks"]:
        s = r["seconds"]
        coll = sum(v for k, v in s.items() if k.startswith("coll/"))
        ck = sum(v for k, v in s.items() if k.startswith("checkpoint/"))
        startup = (r["t_main"] - r["t_launch"]) + (r["t_imported"] - r["t_main"]) \
            + s.get("mpi_init", 0.0) + s.get("solver_init", 0.0)
        total = r["t_end"] - r["t_launch"]
        row = {"rank": r["rank"], "total": total, "startup": startup,
               "compute": s.get("compute", 0.0), "collectives": coll, "checkpoint_io": ck,
               "merge": s.get("merge", 0.0), "hdf5_write": s.get("hdf5_write", 0.0),
               "solver_run": s.get("solver_run", 0.0), "cpu": r["cpu"],
               "bytes_sent": sum(v for k, v in r["bytes_sent"].items() if k != "gather_payload_max"),
               "gather_payload": r["bytes_sent"].get("gather_payload_max", 0),
               "n_blocks": r["calls"].get("compute", 0),
               "coll_calls": {k[5:]: v for k, v in r["calls"].items() if k.startswith("coll/")},
               "coll_seconds": {k[5:]: v for k, v in s.items() if k.startswith("coll/")}}
        row["other"] = total - sum(row[k] for k in ("startup", "compute", "collectives",
                                                     "checkpoint_io", "merge", "hdf5_write"))
        rows.append(row)
    return rows


#: Cluster assumptions of the projection (not measured here). Per stage of a tree collective:
#: inter-node latency plus mpi4py's pickling of a small object, above the 2-rank shared-memory
#: figure measured here; the bandwidth into rank 0 is one node's share of an InfiniBand link.
ALPHA_CLUSTER = 5e-6  # s
BANDWIDTH_RANK0 = 5e9  # bytes/s


def efficiency(P: int, n_blocks: int, p: dict, with_fixed: bool = True) -> dict:
    """Projected time on P ranks and efficiency T_1 / (P T_P), from measured per-block costs.

    Notes
    -----
    With R = ceil(n_blocks / P) rounds of blocks (static round-robin)::

        T_P = t_fixed + R [t_block (1 + cv sqrt(2 ln P)) + t_ckpt] + 2 R alpha ceil(log2 P)
              + t_gather + n_blocks t_merge + t_h5
        T_1 = t_fixed + n_blocks (t_block + t_ckpt) + n_blocks t_merge + t_h5

    Each round ends in two allreduces, so it lasts as long as its slowest block: the expected
    maximum of P block times with relative spread cv is about t_block (1 + cv sqrt(2 ln P))
    (Gaussian extreme value). The gather brings the n_blocks - R blocks of the other ranks to rank
    0 (at the measured per-byte cost of a 2-rank gather, or the assumed link bandwidth plus
    unpickling if slower); merging and writing are rank 0's alone, in T_1 as in T_P.
    """
    R = math.ceil(n_blocks / P)
    t_fixed = p["t_fixed"] if with_fixed else 0.0
    bytes_in = max(n_blocks - R, 0) * p["bytes_per_block"]
    # Rank 0 receives and unpickles everything: the larger of the measured per-byte cost of a
    # 2-rank gather (pickling, copies, unpickling) and the assumed link plus unpickling.
    per_byte = max(p["gather_s_per_byte"], 1 / p["bandwidth"] + p["unpickle_s_per_byte"])
    t_gather = bytes_in * per_byte if P > 1 else 0.0
    sync = 1 + p["cv_block"] * math.sqrt(2 * math.log(P)) if P > 1 else 1.0
    t_coll = 2 * R * p["alpha_stage"] * math.ceil(math.log2(P)) if P > 1 else 0.0
    serial_rank0 = n_blocks * p["merge_s_per_block"] + p["hdf5_write"]
    t1 = t_fixed + n_blocks * (p["t_block"] + p["t_ckpt"]) + serial_rank0
    tp = t_fixed + R * (p["t_block"] * sync + p["t_ckpt"]) + t_coll + t_gather + serial_rank0
    return {"P": P, "n_blocks": n_blocks, "rounds": R, "ideal_rounds": n_blocks / P,
            "t_1": t1, "t_P": tp, "efficiency": t1 / (P * tp),
            "imbalance_eff": n_blocks / (P * R), "sync_factor": sync, "t_gather": t_gather,
            "t_coll_rounds": t_coll, "serial_rank0": serial_rank0,
            "gather_GB_rank0": bytes_in / 1e9, "rank0_peak_GB": 2 * n_blocks * p["bytes_per_block"] / 1e9}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: small runs, one repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samples", default="512,320,200",
                    help="comma-separated sample counts (multiples of 128 split evenly on 2 ranks)")
    ap.add_argument("--points", type=int, default=512)
    ap.add_argument("--t-end", type=float, default=20.0)
    ap.add_argument("--quiet-cores", type=float, default=0.3,
                    help="before each run, wait until other processes use fewer cores than this")
    ap.add_argument("--quiet-timeout", type=float, default=90.0,
                    help="longest wait for a quiet machine before a run [s]")
    ap.add_argument("--json", type=Path, help="write every measurement to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    # worker / micro modes (the script re-runs itself under mpiexec)
    ap.add_argument("--worker", nargs=3, metavar=("RUN", "OUT", "PREFIX"), help=argparse.SUPPRESS)
    ap.add_argument("--micro", nargs=3, metavar=("RUN", "OUT", "PREFIX"), help=argparse.SUPPRESS)
    ap.add_argument("--t-launch", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        ns = argparse.Namespace(run_file=Path(args.worker[0]), output=Path(args.worker[1]),
                                json_prefix=args.worker[2], t_launch=args.t_launch or time.time())
        return worker(ns)
    if args.micro:
        ns = argparse.Namespace(run_file=Path(args.micro[0]), output=Path(args.micro[1]),
                                json_prefix=args.micro[2])
        return micro(ns)

    if args.quick:
        args.repeats, args.samples, args.t_end = 1, "256", 2.0
    samples = [int(s) for s in args.samples.split(",")]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    folder = Path(tempfile.mkdtemp(prefix="bench_mpi_"))
    results: dict = {"machine": {"nproc": os.cpu_count(), "python": sys.version.split()[0]},
                     "runs": [], "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    print(f"bench_mpi: {args.points} points, t_end {args.t_end}, samples {samples}, "
          f"{args.repeats} repeats; load average {loadavg()}; folder {folder}", flush=True)

    # Warm the numba cache for both exchange settings (compile time excluded from every timing).
    for ex in (False, True):
        run = write_run_file(folder, ex, args.points, args.t_end, 16)
        t = time.perf_counter()
        one_run(folder, run, 1, env, f"warm_ex{int(ex)}")
        print(f"warm-up (exchange {ex}): {time.perf_counter() - t:.1f} s", flush=True)

    cases = [(n, ex) for n in samples for ex in ((False, True) if n % 128 == 0 else (True,))]
    best: dict = {}
    for rep in range(args.repeats):
        for n, ex in cases:
            run = write_run_file(folder, ex, args.points, args.t_end, n)
            # Alternate the order so neither rank count always runs first after a load change.
            for ranks in ((1, 2) if rep % 2 == 0 else (2, 1)):
                tag = f"n{n}_ex{int(ex)}_P{ranks}_r{rep}"
                res = one_run(folder, run, ranks, env, tag, quiet=(args.quiet_cores,
                                                                    args.quiet_timeout))
                res.update(samples=n, exchange=ex, P=ranks, repeat=rep,
                           breakdown=breakdown(res))
                results["runs"].append(res)
                key = (n, ex, ranks)
                if key not in best or res["wall"] < best[key]["wall"]:
                    best[key] = res
                b0 = res["breakdown"][0]
                print(f"  {tag}: wall {res['wall']:.2f} s, run {b0['solver_run']:.2f} s, "
                      f"load {res['load_before'][0]:.2f}, other processes "
                      f"{res['foreign_cores']:.2f} cores", flush=True)

    # Micro-benchmark on the checkpoint of the largest 2-rank run.
    n_big = max(samples)
    big = best[(n_big, True, 2)]
    run = write_run_file(folder, True, args.points, args.t_end, n_big)
    prefix = str(folder / "micro")
    _, code, err = launch(2, ["--micro", str(run), big["output"], prefix], env)
    if code != 0:
        raise RuntimeError(f"micro-benchmark: exit {code}\n{err[-3000:]}")
    mic = json.loads(Path(prefix + ".micro.json").read_text())
    results["micro"] = mic
    report(best, cases, mic, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def report(best: dict, cases: list, mic: dict, results: dict) -> None:
    print("\n== Speed-up of 2 ranks over 1 (minimum wall time over repeats) ==")
    print("samples exch blocks(r0/r1) | wall P=1  P=2  speed-up | run P=1  P=2  speed-up | "
          "busy max/mean | s/block P=1 P=2 | other procs [cores] P=1 P=2")
    for n, ex in cases:
        a, b = best[(n, ex, 1)], best[(n, ex, 2)]
        ra, rb = a["breakdown"][0]["solver_run"], b["breakdown"][0]["solver_run"]
        nb = "/".join(str(r["n_blocks"]) for r in b["breakdown"])
        busy = [r["compute"] for r in b["breakdown"]]
        imb = max(busy) / (sum(busy) / len(busy))
        pb1 = a["breakdown"][0]["compute"] / a["breakdown"][0]["n_blocks"]
        pb2 = sum(busy) / sum(r["n_blocks"] for r in b["breakdown"])
        print(f"{n:7d} {ex!s:5s} {nb:>12s} | {a['wall']:8.2f} {b['wall']:5.2f} "
              f"{a['wall'] / b['wall']:7.2f}x | {ra:7.2f} {rb:5.2f} {ra / rb:7.2f}x | "
              f"{imb:13.2f} | {pb1:11.3f} {pb2:5.3f} | {a['foreign_cores']:19.2f} "
              f"{b['foreign_cores']:4.2f}")
    loads = [r["load_before"][0] for r in results["runs"]] + [r["load_after"][0]
                                                              for r in results["runs"]]
    print(f"load average (1 min) over the runs: {min(loads):.2f}-{max(loads):.2f}")

    print("\n== Where the time goes (best runs; seconds, and % of the rank's launch-to-exit) ==")
    cols = ("startup", "compute", "collectives", "checkpoint_io", "merge", "hdf5_write", "other")
    print("case              rank  total | " + " ".join(f"{c:>14s}" for c in cols) + " |   cpu")
    for n, ex in cases:
        for P in (1, 2):
            for row in best[(n, ex, P)]["breakdown"]:
                cells = " ".join(f"{row[c]:6.2f} ({100 * row[c] / row['total']:4.1f}%)"
                                 for c in cols)
                print(f"n{n:<4d} ex{int(ex)} P{P}       {row['rank']}  {row['total']:5.2f} | "
                      f"{cells} | {row['cpu']:5.2f}")
    print("collectives by kind (2-rank runs; calls, seconds):")
    for n, ex in cases:
        for row in best[(n, ex, 2)]["breakdown"]:
            kinds = ", ".join(f"{k} {row['coll_calls'][k]} / {row['coll_seconds'][k]:.4f} s"
                              for k in sorted(row["coll_calls"]))
            print(f"  n{n} ex{int(ex)} rank {row['rank']}: {kinds}")

    print("\n== Communication volume per rank per run (2 ranks; pickled payloads) ==")
    for n, ex in cases:
        rows = best[(n, ex, 2)]["breakdown"]
        desc = "; ".join(f"rank {r['rank']}: sends {r['bytes_sent'] / 1e6:.3f} MB "
                         f"(gather payload {r['gather_payload'] / 1e6:.3f} MB, "
                         f"{r['n_blocks']} blocks)" for r in rows)
        print(f"  n{n} ex{int(ex)}: {desc}")

    print("\n== Micro-benchmark (mpiexec -n 2, shared memory) ==")
    print(f"allreduce(int, MAX) {1e6 * mic['allreduce_s']:.1f} us; bcast(small) "
          f"{1e6 * mic['bcast_small_s']:.1f} us; barrier {1e6 * mic['barrier_s']:.1f} us")
    for g in mic["gather"]:
        print(f"gather {g['blocks_per_rank']} block(s)/rank, {g['bytes_per_rank'] / 1e6:.2f} MB: "
              f"{1e3 * g['seconds_rank0']:.2f} ms on rank 0")
    print(f"pickled block {mic['pickle_bytes_per_block'] / 1e6:.3f} MB; checkpoint file "
          f"{mic['block_file_bytes'] / 1e6:.3f} MB; pickle {1e-9 / mic['pickle_s_per_byte']:.2f} "
          f"GB/s, unpickle {1e-9 / mic['unpickle_s_per_byte']:.2f} GB/s; merge "
          f"{1e3 * mic['merge_s_per_block']:.2f} ms/block")

    # Projection inputs: the largest even case with exchange.
    n_big = max(n for n, _ in cases)
    p = projection_inputs(results, n_big, mic)
    results["projection_inputs"] = p
    print(f"\n== Projection: inputs t_block {p['t_block']:.3f} s (spread cv {p['cv_block']:.3f}; "
          f"first block of a process +{p['first_block_extra']:.2f} s; "
          f"{p['slowdown_2ranks']:.2f}x slower per block with 2 ranks), checkpoint write "
          f"{1e3 * p['t_ckpt']:.1f} ms/block, fixed start-up {p['t_fixed']:.2f} s, gather "
          f"{1e9 * p['gather_s_per_byte']:.2f} s/GB at rank 0, HDF5 write "
          f"{p['hdf5_write']:.3f} s; assumed {1e6 * p['alpha_stage']:.0f} us per allreduce stage, "
          f"{p['bandwidth'] / 1e9:.0f} GB/s into rank 0 ==")
    print("model check, 2 ranks on dedicated cores (no contention), against the measured best:")
    for n, ex in cases:
        if not ex:
            continue
        sizes = [min(64, n - s) for s in range(0, n, 64)]
        e = efficiency(2, len(sizes), p)
        # Work of the busier rank (round-robin), in full-block units: partial blocks cost less.
        busiest = max(sum(sizes[0::2]), sum(sizes[1::2])) / 64
        t1 = p["t_fixed"] + n / 64 * p["t_block"] + len(sizes) * p["t_ckpt"] + e["serial_rank0"]
        t2 = (p["t_fixed"] + busiest * p["t_block"] + e["rounds"] * p["t_ckpt"] + e["t_gather"]
              + e["t_coll_rounds"] + e["serial_rank0"])
        meas = best[(n, ex, 1)]["wall"] / best[(n, ex, 2)]["wall"]
        print(f"  {n} samples: predicted speed-up {t1 / t2:.2f}x, measured {meas:.2f}x")
    scen = [("strong 100,000 samples", lambda P: math.ceil(100_000 / 64)),
            ("strong 1,000,000 samples", lambda P: math.ceil(1_000_000 / 64)),
            ("weak 16 blocks per rank", lambda P: 16 * P)]
    print("scenario                    P  blocks rounds (ideal)  | eff  eff(no start-up) "
          "balance sync | T_P [s]  gather [s]  rank-0 merge+write [s]  collectives [s]  "
          "rank-0 peak [GB]")
    proj = []
    for name, nb in scen:
        for P in (2, 100, 1000):
            e = efficiency(P, nb(P), p)
            e0 = efficiency(P, nb(P), p, with_fixed=False)
            e.update(scenario=name, efficiency_no_startup=e0["efficiency"])
            proj.append(e)
            print(f"{name:25s} {P:4d} {e['n_blocks']:7d} {e['rounds']:5d} ({e['ideal_rounds']:8.2f})"
                  f" | {e['efficiency']:.3f} {e0['efficiency']:.3f}  {e['imbalance_eff']:.3f} "
                  f"{e['sync_factor']:.3f} | {e['t_P']:8.1f} {e['t_gather']:8.2f} "
                  f"{e['serial_rank0']:10.2f} {e['t_coll_rounds']:12.4f} {e['rank0_peak_GB']:10.2f}")
    results["projection"] = proj


def gather_slope(mic: dict) -> float:
    """Least-squares slope of rank 0's gather time against the bytes each rank sends [s/byte]."""
    xs = [g["bytes_per_rank"] for g in mic["gather"]]
    ys = [g["seconds_rank0"] for g in mic["gather"]]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def projection_inputs(results: dict, n: int, mic: dict) -> dict:
    """Per-block costs from the 1-rank runs of ``n`` samples with exchange (minimum over repeats
    per block), spread of the block times, and the micro-benchmark's rates."""
    runs1 = [r for r in results["runs"] if r["samples"] == n and r["exchange"] and r["P"] == 1]
    runs2 = [r for r in results["runs"] if r["samples"] == n and r["exchange"] and r["P"] == 2]
    # A process's first block also loads the numba cache and builds FFT plans: that extra is a
    # per-process fixed cost (added to t_fixed); the steady per-block time comes from the others.
    per_block = [min(col) for col in zip(*[r["ranks"][0]["samples"]["compute"] for r in runs1])]
    first_extra = per_block[0] - sum(per_block[1:]) / len(per_block[1:])
    per_block = per_block[1:]
    per_block2 = [min(col) for rank in range(2)
                  for col in zip(*[r["ranks"][rank]["samples"]["compute"][1:] for r in runs2])]
    mean = sum(per_block) / len(per_block)
    cv = (sum((t - mean) ** 2 for t in per_block) / max(len(per_block) - 1, 1)) ** 0.5 / mean
    ck = sorted(t for r in runs1 for t in r["ranks"][0]["samples"].get("checkpoint/save_block", []))
    best1 = min(runs1, key=lambda r: r["wall"])["breakdown"][0]
    return {"t_block": mean, "cv_block": cv,
            "slowdown_2ranks": (sum(per_block2) / len(per_block2)) / mean,
            "t_ckpt": ck[len(ck) // 2] if ck else 0.0,
            "first_block_extra": first_extra,
            "t_fixed": best1["startup"] + best1["other"] + max(first_extra, 0.0),
            "hdf5_write": best1["hdf5_write"],
            "bytes_per_block": mic["pickle_bytes_per_block"],
            "pickle_s_per_byte": mic["pickle_s_per_byte"],
            "unpickle_s_per_byte": mic["unpickle_s_per_byte"],
            "merge_s_per_block": mic["merge_s_per_block"],
            "gather_s_per_byte": gather_slope(mic),
            "alpha_stage": max(ALPHA_CLUSTER, mic["allreduce_s"]), "bandwidth": BANDWIDTH_RANK0}


if __name__ == "__main__":
    raise SystemExit(main())
