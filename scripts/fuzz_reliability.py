"""Fuzz the command line for tracebacks (issue 11): generated run files through ``bohmpower check``,
and random argument lists through every command.

Usage::

    python scripts/fuzz_reliability.py [--run-files 10000] [--cli 1000] [--seed 0]

Run files come from three generators, in turn: the hypothesis strategies of
``tests/test_config_fuzz.py`` (mutations of the valid files in tests/data: keys deleted, added,
moved, values of any type including the float limits), written as TOML; byte-level mutations of the
same files' text (flipped, inserted and deleted bytes, non-UTF-8 bytes included); and one float key
of a valid file set near the float limits. Each goes through ``bohmpower check FILE`` in-process
(load, model build, resolution rules, memory and time estimates): the exit code must be 0 or 2
and nothing may reach the CLI's "unexpected failure" branch or escape ``main``.

Argument lists draw 1-7 words from the commands (check, info, plot, compare, run, exact), their
options, bad numbers and paths (a tiny valid run file for each engine, results they wrote, another
program's HDF5 file, folders, missing files, non-UTF-8 names), so `run` and `exact` really run
(a few steps on a small grid) when the draw is valid. Allowed: exit 0, 1 with a named failure (never
"unexpected failure"), 2, 3 and argparse's usage exit 2.

Prints the counts of each outcome and every failing input with its message (exit 1 when any).
``tests/test_reliability.py`` calls :func:`fuzz_run_files` and :func:`fuzz_cli` with small counts.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import io
import json
import logging
import math
import os
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bohmpower.cli import main  # noqa: E402

NEAR_LIMITS = [1e30, -1e30, 1.0000001e30, 1e-30, 9.9999e-31, 1e308, 1e-300, 5e-324, 1e200,
               -1e200, 2.0 ** 62, math.nan, math.inf]


@dataclass
class Report:
    """Outcome counts and the inputs that ended in a traceback (or an exit code not allowed)."""

    n: int = 0
    codes: collections.Counter = field(default_factory=collections.Counter)
    failures: list = field(default_factory=list)
    progress: int = 0  # print a line every this many cases (0: never)

    def line(self, what: str) -> str:
        codes = ", ".join(f"exit {c}: {k}" for c, k in sorted(self.codes.items(), key=str))
        return f"{what}: {self.n} cases ({codes}); {len(self.failures)} traceback(s)"


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _call(args: list[str], report: Report, allowed=(0, 2), label=None) -> None:
    """``main(args)`` in-process: counts its exit code, records what is not allowed."""
    cap = _Capture()
    root = logging.getLogger()
    root.addHandler(cap)
    report.n += 1
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # `check` and `info` print; not counted
            code = main(args)
    except SystemExit as exc:  # argparse: usage error (2) or --help/--version (0)
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException as exc:  # noqa: BLE001  (an escaped exception is what we hunt)
        report.codes["escaped"] += 1
        report.failures.append((label or args, f"{type(exc).__name__}: {exc}"))
        return
    finally:
        root.removeHandler(cap)
    text = "\n".join(cap.lines)
    report.codes[code] += 1
    if report.progress and report.n % report.progress == 0:
        print(f"  ... {report.n} cases, {len(report.failures)} traceback(s)", flush=True)
    if code not in allowed or "unexpected failure" in text:
        report.failures.append((label or args, f"exit {code}: {text[-600:]}"))


# ------------------------------------------------------------------------------------ TOML writer
def _toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append("?")  # lone surrogates cannot be written as UTF-8
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_string(str(k))} = {_toml_value(x)}"
                               for k, x in v.items()) + "}"
    return _toml_string(str(v))


def to_toml(doc: dict) -> str:
    """Any nest of dicts, lists and scalars as TOML (every table inline, one key per line)."""
    return "\n".join(f"{_toml_string(str(k))} = {_toml_value(v)}" for k, v in doc.items()) + "\n"


# ------------------------------------------------------------------------------------ run files
def _bases():
    from tests.test_config_fuzz import BASES, DATA

    return BASES, sorted(p.read_bytes() for p in DATA.glob("*.toml"))


def _byte_mutation(data, texts) -> bytes:
    b = bytearray(data.draw(st.sampled_from(texts)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, max(len(b) - 1, 0)))
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "duplicate_line"]))
        if op == "flip" and b:
            b[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            b[i:i] = data.draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"=", b"[", b"]",
                                                b"\n", b'"', b"1e400", b"nan", b"-", b"."]))
        elif op == "delete":
            del b[i:i + data.draw(st.integers(1, 12))]
        else:
            lines = bytes(b).split(b"\n")
            j = data.draw(st.integers(0, len(lines) - 1))
            lines.insert(j, lines[j])
            b = bytearray(b"\n".join(lines))
    return bytes(b)


def _near_limit(data, bases) -> dict:
    from tests.test_config_fuzz import containers

    doc = copy.deepcopy(data.draw(st.sampled_from(bases)))
    floats = [(n, k) for n in containers(doc) if isinstance(n, dict)
              for k, v in n.items() if isinstance(v, float) and not isinstance(v, bool)]
    if floats:
        node, key = data.draw(st.sampled_from(floats))
        node[key] = data.draw(st.sampled_from(NEAR_LIMITS)) * data.draw(st.sampled_from([1, -1]))
    return doc


def _memoize_absorber_strength() -> None:
    """The automatic absorber strength is a pure function of four floats costing ~1 s (an
    optimisation over wavenumbers): the many generated files that keep a base file's absorbing
    grid would spend most of the fuzz run recomputing the same value. The first call with each
    argument set still runs it; repeats are served from a cache."""
    import functools

    import bohmpower.model as model

    if not hasattr(model.default_absorber_strength, "cache_info"):
        model.default_absorber_strength = functools.lru_cache(maxsize=None)(
            model.default_absorber_strength)


def fuzz_run_files(n: int, folder: Path, seed: int = 0, progress: int = 0) -> Report:
    """``n`` generated run files through ``bohmpower check`` (module docstring)."""
    _memoize_absorber_strength()
    from tests.test_config_fuzz import mutate, values

    bases, texts = _bases()
    folder = Path(folder)
    (folder / "u.dat").write_text("-40 0\n0 1\n40 0\n")  # table potentials of the mutated files
    path = folder / "fuzz.toml"
    report = Report(progress=progress)

    @settings(max_examples=n, derandomize=seed == 0, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def case(data):
        kind = data.draw(st.integers(0, 3), label="generator")
        if kind == 0:
            body = to_toml(mutate(data.draw(st.sampled_from(bases)), data)).encode()
        elif kind == 1:
            body = _byte_mutation(data, texts)
        elif kind == 2:
            body = to_toml(_near_limit(data, bases)).encode()
        else:  # one key of any type, anywhere it appears
            from tests.test_config_fuzz import KEY_NAMES, containers

            doc = copy.deepcopy(data.draw(st.sampled_from(bases)))
            tables = [t for t in containers(doc) if isinstance(t, dict)]
            data.draw(st.sampled_from(tables))[data.draw(st.sampled_from(KEY_NAMES))] = \
                data.draw(values)
            body = to_toml(doc).encode()
        path.write_bytes(body)
        _call(["check", str(path)], report, label=body[:2000])

    case()
    return report


# ------------------------------------------------------------------------------------ CLI lists
def _cli_words(folder: Path) -> list[str]:
    from tests.conftest import run_dict, write_run_file

    grid = {"x_min": -20.0, "x_max": 20.0, "points": 32, "boundary": "periodic"}
    time = {"dt": 0.05, "t_end": 0.2, "save_every": 2}
    cw = write_run_file(folder / "cw.toml", run_dict(
        grid=grid, time=time, volume=[{"name": "dev", "x_min": -3.0, "x_max": 3.0}],
        trajectories={"count": 3, "seed": 1, "store": 1}, method={"exchange": False}))
    ex = write_run_file(folder / "ex.toml", run_dict(
        grid=grid, time=time, volume=[{"name": "dev", "x_min": -3.0, "x_max": 3.0}]))
    for args in (["run", cw, "-o", folder / "cw.h5", "-q"],
                 ["exact", ex, "-o", folder / "ex.h5", "-q"]):
        assert main([str(a) for a in args]) == 0
    junk = folder / "junk.h5"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    return ["check", "info", "plot", "compare", "run", "exact", "-o", "--output", "--plot",
            "--alpha", "--seed", "--samples", "--workers", "--checkpoint-every",
            "--checkpoint-interval", "--max-wall-time", "--discard-bad-samples",
            "--fail-on-disagreement", "--report-only", "-q", "-v", "--overwrite", "--resume",
            "--version", "0", "-1", "3", "0.5", "nan", "1e400", "", "\udcff",
            str(cw), str(ex), str(folder / "cw.h5"), str(folder / "ex.h5"), str(junk),
            str(folder), str(folder / "none.h5"), str(folder / "new.h5"),
            str(folder / "missing" / "f.png"), str(folder / "fig.png")]


def fuzz_cli(n: int, folder: Path, seed: int = 0, progress: int = 0) -> Report:
    """``n`` random argument lists through ``main`` (module docstring)."""
    folder = Path(folder)
    words = _cli_words(folder)
    report = Report(progress=progress)
    commands = ("check", "info", "plot", "compare", "run", "exact")

    @settings(max_examples=n, derandomize=seed == 0, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(head=st.sampled_from(commands), rest=st.lists(st.sampled_from(words), max_size=6))
    def case(head, rest):
        _call([head, *rest], report, allowed=(0, 1, 2, 3))

    case()
    return report


def main_(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-files", type=int, default=10000)
    ap.add_argument("--cli", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="0: hypothesis derandomized (repeatable)")
    args = ap.parse_args(argv)
    # messages are captured by _call (a root handler of our own stops the CLI's basicConfig from
    # adding one that prints them); progress bars and warnings go nowhere
    logging.getLogger().addHandler(logging.NullHandler())
    logging.getLogger().setLevel(logging.WARNING)
    reports = []
    with tempfile.TemporaryDirectory(prefix="fuzz_reliability_") as d:
        for what, fun, n in (("run files", fuzz_run_files, args.run_files),
                             ("CLI argument lists", fuzz_cli, args.cli)):
            if n <= 0:
                continue
            sub = Path(d) / what.replace(" ", "_")
            sub.mkdir()
            cwd = os.getcwd()
            os.chdir(sub)  # default outputs (RUN.cw.h5, reports) stay in the scratch folder
            try:
                r = fun(n, sub, args.seed, progress=500)
            finally:
                os.chdir(cwd)
            reports.append(r)
            print(r.line(what), flush=True)
            for inp, msg in r.failures:
                print(f"  TRACEBACK for {inp!r}:\n    {msg}", flush=True)
    return 1 if any(r.failures for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main_())
