"""Measured run times of the demo and the examples, against the estimate `bohmpower check` prints.

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 python scripts/measure_timings.py [--only ex01 ex05] [--write]

For every command a user types in the README and the example READMEs: ``bohmpower check`` on its run
file (the estimate it prints, divided by the ranks where it says so), then the command itself, timed
as a whole (wall time, and the CPU time of the process and its children, MPI ranks included), one
after the other, with the machine's load average before each. Prints a markdown table (for
benchmarks/README.md) and writes the records to ``benchmarks/timings.json``. ``--write`` also
replaces the timing sentences the READMEs keep between ``<!-- timing:KEY -->`` and
``<!-- /timing -->`` with the measured numbers, so that no quoted time is older than its last
measurement.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "bohmpower" / "demo"
EX = REPO / "examples"
#: the READMEs whose timing sentences --write keeps up to date
READMES = [REPO / "README.md", *sorted(EX.glob("*/README.md"))]


@dataclass(frozen=True)
class Case:
    key: str
    run_file: Path  # what `bohmpower check` reads
    argv: tuple[str, ...]  # the command after "bohmpower", {out} the output directory
    ranks: int = 1


CASES = [
    Case("demo_exact", DEMO / "exact_demo.toml", ("exact", "-o", "{out}/demo.exact.h5")),
    Case("demo_run", DEMO / "run_demo.toml", ("run", "-o", "{out}/demo.cw.h5")),
    Case("ex01", EX / "01_single_electron_barrier/run.toml",
         ("exact", "{file}", "-o", "{out}/ex01.h5")),
    Case("ex02_exact", EX / "02_two_electrons_exact_vs_cw/exact.toml",
         ("exact", "{file}", "-o", "{out}/ex02_exact.h5")),
    Case("ex02_cw", EX / "02_two_electrons_exact_vs_cw/cw.toml",
         ("run", "{file}", "-o", "{out}/ex02_cw.h5")),
    Case("ex02_cw_exchange", EX / "02_two_electrons_exact_vs_cw/cw_exchange.toml",
         ("run", "{file}", "-o", "{out}/ex02_cwx.h5")),
    Case("ex03", EX / "03_resonant_tunnelling_diode/run.toml",
         ("exact", "{file}", "-o", "{out}/ex03.h5")),
    Case("ex04", EX / "04_large_n_channel/run.toml",
         ("run", "{file}", "-o", "{out}/ex04.h5"), ranks=2),
    Case("ex05", EX / "05_uniform_field_sum_rule/run.toml",
         ("exact", "{file}", "-o", "{out}/ex05.h5")),
    Case("ex06_exact", EX / "06_strong_collision_icwf/exact.toml",
         ("exact", "{file}", "-o", "{out}/ex06_exact.h5")),
    Case("ex06_zeroth", EX / "06_strong_collision_icwf/zeroth.toml",
         ("run", "{file}", "-o", "{out}/ex06_zeroth.h5")),
    Case("ex06_icwf", EX / "06_strong_collision_icwf/icwf.toml",
         ("run", "{file}", "-o", "{out}/ex06_icwf.h5")),
]

_UNIT = {"s": 1.0, "min": 60.0, "h": 3600.0}


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}"


def parse_estimate(check_output: str, ranks: int) -> float:
    """Seconds from the "run time: about X unit" line of `bohmpower check` (over the ranks where the
    line says to divide)."""
    m = re.search(r"run time: about ([0-9.]+) (s|min|h)\b", check_output)
    if m is None:
        raise RuntimeError("bohmpower check printed no run-time estimate:\n" + check_output)
    seconds = float(m.group(1)) * _UNIT[m.group(2)]
    k = re.search(r"kernels ([0-9.]+) (s|min|h) \(divide by the number of MPI ranks", check_output)
    if k is not None:  # the kernels share out over the ranks, the command's fixed cost does not
        kernels = float(k.group(1)) * _UNIT[k.group(2)]
        seconds += kernels / ranks - kernels
    return seconds


def _env() -> dict:
    env = dict(os.environ)
    for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = "1"
    return env


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds (self and children) of a command, and its stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stderr + proc.stdout


def measure(case: Case, out: Path) -> dict:
    bohmpower = [sys.executable, "-m", "bohmpower"]
    check = subprocess.run([*bohmpower, "check", str(case.run_file)], cwd=REPO, env=_env(),
                           capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise RuntimeError(f"bohmpower check {case.run_file} failed:\n{check.stderr}")
    estimate = parse_estimate(check.stdout + check.stderr, case.ranks)
    argv = [a.format(out=out, file=case.run_file) for a in case.argv]
    cmd = [*bohmpower, *argv]
    if case.ranks > 1:
        cmd = ["mpiexec", "-n", str(case.ranks), *cmd]
    load = os.getloadavg()[0]
    wall, cpu, _ = timed(cmd, REPO)
    return {"key": case.key, "command": "bohmpower " + " ".join(
                a.replace(str(REPO) + "/", "").replace(str(out), "OUT") for a in argv),
            "ranks": case.ranks, "estimate_s": estimate, "wall_s": wall, "cpu_s": cpu,
            "ratio": wall / estimate, "load_before": load, "load_after": os.getloadavg()[0],
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s" if seconds >= 20 else f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def sentence(rec: dict) -> str:
    """What a README says of a measured command."""
    ranks = f" on {rec['ranks']} MPI ranks" if rec["ranks"] > 1 else ""
    return (f"{human(rec['wall_s'])}{ranks} (CPU {human(rec['cpu_s'])}; `bohmpower check` said "
            f"{human(rec['estimate_s'])}; `scripts/measure_timings.py`, {rec['date'][:10]}, load "
            f"{rec['load_before']:.1f})")


def write_readmes(records: dict) -> list[Path]:
    changed = []
    pattern = re.compile(r"<!-- timing:([a-z0-9_]+) -->(.*?)<!-- /timing -->", re.DOTALL)
    for path in READMES:
        text = path.read_text()

        def sub(m):
            rec = records.get(m.group(1))
            return m.group(0) if rec is None else (
                f"<!-- timing:{m.group(1)} -->{sentence(rec)}<!-- /timing -->")

        new = pattern.sub(sub, text)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=[c.key for c in CASES])
    ap.add_argument("--write", action="store_true",
                    help="update the READMEs' <!-- timing:KEY --> sentences")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "timings.json")
    args = ap.parse_args()
    cases = [c for c in CASES if args.only is None or c.key in args.only]
    records = json.loads(args.json.read_text()) if args.json.exists() else {}
    print(f"machine: {machine()}")
    print("| command | ranks | `check` estimate | measured wall | CPU | measured / estimate | load |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            rec = measure(case, Path(tmp))
            rec["machine"] = machine()
            records[case.key] = rec
            print(f"| `{rec['command']}` | {rec['ranks']} | {rec['estimate_s']:.1f} s | "
                  f"{rec['wall_s']:.1f} s | {rec['cpu_s']:.1f} s | {rec['ratio']:.2f} | "
                  f"{rec['load_before']:.1f} |", flush=True)
    args.json.write_text(json.dumps(records, indent=1) + "\n")
    if args.write:
        for path in write_readmes(records):
            print(f"updated {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
