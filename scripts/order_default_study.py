"""Order 2 against order 4 for the whole `bohmpower exact` command at equal accuracy (a benchmark
script, not a test): the evidence for the default of ``[numerics] order``.

What. For the built-in exact demo and the exact run files of the examples (``CASES``), each run as
the whole command a user types, ``python -m bohmpower exact RUN.toml -o OUT.h5``, in a fresh process:

- the reference: order 4 at dt / ``--ref-divisor`` (4) with ``save_every`` times 4, so the frames and
  windows fall at the same times, and the window-quadrature node spacings ``[numerics]
  window_node_phase`` and ``edge_node_phase`` divided by the same factor (the window averages of the
  reference are converged in the quadrature too, not only in the state);
- order 2 at the file's own dt (the current default);
- order 4 at ``--factors`` times the file's dt (default 1, 2, 2.5, 4, 5), ``save_every`` divided by
  the factor so save_every*dt (and the window) are unchanged; only factors where save_every, t_end/dt
  and window/dt stay whole numbers. When the order-4 phase limit (3 max_phase^(1/2) rad) refuses a dt,
  the run is repeated with ``[numerics] max_phase`` raised just enough (reported in the table). A
  run that stops on a numerical failure (exit 1, "error: numerical failure ...") is reported as
  failed and not repeated.

Against the reference, from the result files (h5py, docs/result-file.md):

- (a) the state: max over frames of |E - E_ref| / |E_ref| of ``/global/energy``, and max over frames
  and x of |n - n_ref| / max(n_ref) of ``/fields/density``;
- (b) the window averages: per volume, max over windows and power terms (``power``, ``field_work``,
  ``interaction``, ``quantum``, ``quantum_flux``, ``quantum_nonlocal``, ``boundary_flux``,
  ``absorbed``) of |term - ref| over the volume's largest |reference window power term|; then the
  max over volumes;
- (c) for information only (not in the criterion), with ``[trajectories]``: the same as (b) for the
  trajectory estimates' window averages (``/trajectory_estimates/volumes``; same seed, so the same
  initial samples: the difference is the guidance step's error, Heun's with step dt, not noise).

How. Each setting's command is timed as the wall time of the whole fresh process (median of
``--repeats``, 3), and so is a short run of the same file with t_end = 2 windows; the start-up S is
the straight line through the two medians, wall(t_end) = S + r t_end, taken at t_end = 0, and "wall
- S" = r t_end is the run's own cost. Every command runs in a scratch folder outside the checkout
(``python -m bohmpower`` would import the checkout's ``bohmpower/`` from the current folder first),
with NUMBA_NUM_THREADS = OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = MKL_NUM_THREADS = 1, one command
at a time, the repeats interleaved over the settings (every setting sees the same load drift), and
BOHMPOWER_CACHE_DIR in the scratch folder (a copy of the machine's records, so these runs do not move
the fixed cost that ``bohmpower check`` adds on this machine). The numba cache is the package's own
(warm: the first repeat would show a compile).

Verdict per case: order 4's cheapest setting whose errors (a) (both) and (b) are all <= order 2's,
and its wall time against order 2's.

Usage::

    python scripts/order_default_study.py                        # every case (about 24 minutes)
    python scripts/order_default_study.py --cases demo ex01      # some cases
    python scripts/order_default_study.py --t-end ex05=8 --repeats 3 --json out.json --markdown out.md
    python scripts/order_default_study.py --quick                # smoke test: demo, t_end 4, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from bohmpower.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
THREAD_ENV = {
    "NUMBA_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

#: name -> (run file in the checkout, t_end used [the file's time unit]; None: the file's own).
#: The shortened t_end keep the runs of the study within ~25 minutes on one core (still 15, 15
#: and 8 windows).
CASES = {
    "demo": ("bohmpower/demo/exact_demo.toml", None),
    "ex01": ("examples/01_single_electron_barrier/run.toml", None),
    "ex02": ("examples/02_two_electrons_exact_vs_cw/exact.toml", 15.0),
    "ex05": ("examples/05_uniform_field_sum_rule/run.toml", 8.0),
    "ex06": ("examples/06_strong_collision_icwf/exact.toml", 15.0),
}
#: Sections dropped per case (none: every case with [trajectories] runs in well under a minute).
DROP: dict[str, list[str]] = {}

DEFAULT_FACTORS = (1.0, 2.0, 2.5, 4.0, 5.0)
#: Order-4 phase limit factor kappa_4 (bohmpower.model.resolution.ORDER_PHASE_FACTOR[4]).
KAPPA_4 = 3.0
DEFAULT_WINDOW_NODE_PHASE = 0.6
DEFAULT_EDGE_NODE_PHASE = 0.4
WINDOW_TERMS = ("power", "field_work", "interaction", "quantum", "quantum_flux", "quantum_nonlocal",
                "boundary_flux", "absorbed")
TOL = 1e-9


# ------------------------------------------------------------------------------------ the run files
def whole(x: float) -> int | None:
    n = round(x)
    return n if n >= 1 and abs(x - n) <= TOL * max(1, n) else None


def variant(base: dict, *, dt_factor: float, order: int, t_end: float | None = None,
            node_divisor: float = 1.0, max_phase: float | None = None) -> dict | None:
    """The run file at dt*dt_factor with save_every/dt_factor (same frame and window times), or
    None when a step count would not be whole."""
    cfg = json.loads(json.dumps(base))  # deep copy
    tm = cfg["time"]
    dt = float(tm["dt"]) * dt_factor
    save = whole(int(tm.get("save_every", 1)) / dt_factor)
    t_end = float(tm["t_end"]) if t_end is None else float(t_end)
    if save is None or whole(t_end / dt) is None:
        return None
    if "window" in tm and whole(float(tm["window"]) / dt) is None:
        return None
    tm["dt"], tm["save_every"], tm["t_end"] = dt, save, t_end
    num = cfg.setdefault("numerics", {})
    num["order"] = order
    if node_divisor != 1.0:
        num["window_node_phase"] = float(num.get("window_node_phase", DEFAULT_WINDOW_NODE_PHASE)) / node_divisor
        num["edge_node_phase"] = float(num.get("edge_node_phase", DEFAULT_EDGE_NODE_PHASE)) / node_divisor
    if max_phase is not None:
        num["max_phase"] = max_phase
    return cfg


def window_length(cfg: dict) -> float:
    tm = cfg["time"]
    return float(tm["window"]) if "window" in tm else float(tm["dt"]) * int(tm.get("save_every", 1))


# -------------------------------------------------------------------------------------- the commands
def run_cmd(args: list[str], cwd: Path, env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bohmpower", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, proc


def run_cmd_py(code: str, arg: str, cwd: Path, env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, arg], cwd=cwd, env=env, capture_output=True,
                          text=True, check=True)
    return time.perf_counter() - t0, proc


#: The resolution rules' phase per step of a run file (bohmpower.model.resolution), in a child.
PHASE_CODE = """import sys
from bohmpower.config import load_config
from bohmpower.model import build_model
model, _ = build_model(load_config(sys.argv[1]), command="check")
print(repr(model.resolution.phase))
"""
PHASE_RE = re.compile(r"phase of ([0-9.eE+-]+) rad per step")
MEASURED_RE = re.compile(r"measured: observables [0-9.]+ s \(([^)]*)\)")


def run_exact(cfg: dict, name: str, scratch: Path, env: dict, log) -> dict:
    """Run `bohmpower exact` on cfg once (raising max_phase if the order-4 limit refuses the dt)."""
    notes = []
    for _attempt in range(3):
        toml = scratch / f"{name}.toml"
        resolved = parse_config(cfg, ROOT)  # (no case names a file) written by the package's own to_toml
        toml.write_text(resolved.to_toml())
        assert parse_config(tomllib.loads(toml.read_text()), ROOT) == resolved
        out = scratch / f"{name}.h5"
        wall, proc = run_cmd(["exact", str(toml), "-o", str(out), "--overwrite"], scratch, env)
        text = proc.stdout + proc.stderr
        if proc.returncode == 0:
            m = MEASURED_RE.search(text)
            return {"wall": wall, "file": out, "toml": toml, "cfg": cfg, "notes": notes,
                    "nodes": m.group(1) if m else ""}
        m = PHASE_RE.search(text)
        if m and "limit" in text and "max_phase" in text:
            phase = float(m.group(1))
            need = math.ceil((phase / KAPPA_4) ** 2 * 1.001 * 100) / 100
            cfg = json.loads(json.dumps(cfg))
            cfg.setdefault("numerics", {})["max_phase"] = need
            notes.append(f"max_phase raised to {need:g} (phase {phase:g} rad per step)")
            log(f"    {name}: refused at {phase:g} rad per step; retrying with max_phase {need:g}")
            continue
        fail = [ln for ln in text.splitlines() if ln.startswith("error:")]
        if proc.returncode == 1 and fail:  # a numerical failure the run detected: a result too
            log(f"    {name}: the run failed after {wall:.2f} s: {fail[-1]}")
            return {"wall": wall, "cfg": cfg, "notes": notes, "failed": fail[-1], "nodes": ""}
        raise RuntimeError(f"{name} failed (rc {proc.returncode}):\n{text[-3000:]}")
    raise RuntimeError(f"{name}: still refused after raising max_phase")


# -------------------------------------------------------------------------------------- the errors
def read_result(path: Path) -> dict:
    import h5py
    import numpy as np

    out = {"volumes": {}}
    with h5py.File(path, "r") as f:
        out["time"] = np.asarray(f["time"][...], dtype=float)
        out["energy"] = np.asarray(f["global/energy"][...], dtype=float)
        out["density"] = np.asarray(f["fields/density"][...], dtype=float)
        for key, where in (("volumes", "volumes"), ("traj_volumes", "trajectory_estimates/volumes")):
            out[key] = {}
            if where not in f:
                continue
            for vname, grp in f[where].items():
                if "window" not in grp:
                    continue
                w = grp["window"]
                out[key][vname] = {
                    "t_start": np.asarray(w["t_start"][...], dtype=float),
                    **{t: np.asarray(w[t][...], dtype=float) for t in WINDOW_TERMS if t in w},
                }
    return out


def window_errors(vols: dict, ref_vols: dict) -> dict | None:
    """max over volumes of (max over windows and power terms of |term - ref|) / the volume's largest
    |reference window power term|, with where it is."""
    import numpy as np

    if not ref_vols:
        return None
    per_volume = {}
    for vname, rv in ref_vols.items():
        v = vols[vname]
        if not np.allclose(v["t_start"], rv["t_start"], rtol=1e-12, atol=1e-12):
            raise RuntimeError(f"windows of {vname} at different times than the reference")
        terms = [t for t in WINDOW_TERMS if t in rv]
        scale = max(float(np.max(np.abs(rv[t]))) for t in terms)
        if scale == 0.0:  # nothing in the volume in the reference (e.g. no trajectory reached it)
            diff = max(float(np.max(np.abs(v[t]))) for t in terms)
            per_term = {t: (0.0 if diff == 0.0 else math.inf) for t in terms}
        else:
            per_term = {t: float(np.max(np.abs(v[t] - rv[t]))) / scale for t in terms}
        worst = max(per_term, key=per_term.get)
        per_volume[vname] = {"scale": scale, "error": per_term[worst], "worst_term": worst,
                             "per_term": per_term}
    wv = max(per_volume, key=lambda k: per_volume[k]["error"])
    return {"error": per_volume[wv]["error"], "where": f"{wv}/{per_volume[wv]['worst_term']}",
            "volumes": per_volume}


def errors(res: dict, ref: dict) -> dict:
    import numpy as np

    if res["time"].shape != ref["time"].shape or not np.allclose(res["time"], ref["time"], rtol=1e-12,
                                                                 atol=1e-12):
        raise RuntimeError("frames at different times than the reference")
    e_energy = float(np.max(np.abs(res["energy"] - ref["energy"]) / np.abs(ref["energy"])))
    e_density = float(np.max(np.abs(res["density"] - ref["density"])) / np.max(ref["density"]))
    win = window_errors(res["volumes"], ref["volumes"])
    traj = window_errors(res["traj_volumes"], ref["traj_volumes"])
    return {"energy": e_energy, "density": e_density, "window": win["error"],
            "window_where": win["where"], "volumes": win["volumes"],
            "trajectory_window": traj["error"] if traj else None,
            "trajectory_window_where": traj["where"] if traj else None}


# ------------------------------------------------------------------------------------------- a case
def study_case(name: str, rel_path: str, t_end: float | None, args, scratch_root: Path, env: dict,
               log) -> dict:
    src = ROOT / rel_path
    scratch = scratch_root / name
    scratch.mkdir()
    # kind and phase per step of the file as it stands
    _, chk = run_cmd(["check", str(src)], scratch, env)
    text = chk.stdout + chk.stderr
    if chk.returncode != 0 or "exact-run estimates" not in text:
        raise RuntimeError(f"{rel_path} is not an exact run file:\n{text[-2000:]}")
    # the phase per step at the file's dt, unrounded (check prints 3 digits); linear in dt
    _, ph = run_cmd_py(PHASE_CODE, str(src), scratch, env)
    phase_1x = float(ph.stdout.split()[-1])
    base = tomllib.loads(src.read_text())
    for section in DROP.get(name, []):
        base.pop(section, None)
    if t_end is None:
        t_end = float(base["time"]["t_end"])
    window = window_length(base)
    log(f"\n== {name}: {rel_path}  (t_end {t_end:g}, file's {base['time']['t_end']:g}; window {window:g}; "
        f"dt {base['time']['dt']:g}, {phase_1x:g} rad per step, check: {text.splitlines()[0]})")

    settings = [("order 2", 2, 1.0)]
    for fac in args.factors:
        if variant(base, dt_factor=fac, order=4, t_end=t_end) is not None:
            settings.append((f"order 4 x{fac:g}", 4, fac))
        else:
            log(f"    order 4 x{fac:g}: skipped (save_every, t_end/dt or window/dt not whole)")

    # the reference, once
    ref_cfg = variant(base, dt_factor=1.0 / args.ref_divisor, order=4, t_end=t_end,
                      node_divisor=args.ref_divisor)
    log(f"    reference: order 4, dt {ref_cfg['time']['dt']:g}, save_every {ref_cfg['time']['save_every']}, "
        f"window_node_phase {ref_cfg['numerics']['window_node_phase']:g}, "
        f"edge_node_phase {ref_cfg['numerics']['edge_node_phase']:g} ...")
    ref_run = run_exact(ref_cfg, "ref", scratch, env, log)
    log(f"    reference: {ref_run['wall']:.1f} s ({ref_run['nodes']})")
    ref = read_result(ref_run["file"])

    rows = {label: {"label": label, "order": order, "factor": fac, "walls": [], "short_walls": []}
            for label, order, fac in settings}
    for rep in range(args.repeats):
        for label, order, fac in settings:
            row = rows[label]
            if row.get("failed"):
                continue
            cfg = row.get("cfg") or variant(base, dt_factor=fac, order=order, t_end=t_end)
            tag = f"o{order}_x{fac:g}"
            r = run_exact(cfg, tag, scratch, env, log)
            if r.get("failed"):
                row.update(failed=r["failed"], failed_wall=r["wall"], notes=r["notes"],
                           dt=r["cfg"]["time"]["dt"], save_every=r["cfg"]["time"]["save_every"],
                           phase=phase_1x * fac)
                continue
            row["cfg"] = r["cfg"]  # with max_phase raised, if it had to be
            row["walls"].append(r["wall"])
            if rep == 0:
                row["notes"], row["nodes"] = r["notes"], r["nodes"]
                row["dt"] = r["cfg"]["time"]["dt"]
                row["save_every"] = r["cfg"]["time"]["save_every"]
                row["phase"] = phase_1x * fac
                row["errors"] = errors(read_result(r["file"]), ref)
            short = json.loads(json.dumps(r["cfg"]))
            short["time"]["t_end"] = 2.0 * window
            s = run_exact(short, tag + "_short", scratch, env, log)
            row["short_walls"].append(s["wall"])
            log(f"    rep {rep + 1}/{args.repeats} {label:>12}: {r['wall']:6.2f} s, short {s['wall']:5.2f} s"
                + (f"  [{r['nodes']}]" if rep == 0 else ""))

    out_rows, failed_rows = [], []
    for label, _order, _fac in settings:
        row = rows[label]
        row.pop("cfg", None)
        if row.get("failed"):
            failed_rows.append(row)
            continue
        wall = statistics.median(row["walls"])
        short = statistics.median(row["short_walls"])
        rate = (wall - short) / (t_end - 2.0 * window)
        startup = short - rate * 2.0 * window
        row.update(wall=wall, short=short, startup=startup, net=wall - startup)
        out_rows.append(row)
    o2 = out_rows[0]
    for row in out_rows:
        row["ratio_wall"] = row["wall"] / o2["wall"]
        row["ratio_net"] = row["net"] / o2["net"]
        e, e2 = row["errors"], o2["errors"]
        row["as_accurate"] = (e["energy"] <= e2["energy"] and e["density"] <= e2["density"]
                              and e["window"] <= e2["window"])
    ok = [r for r in out_rows[1:] if r["as_accurate"]]
    best = min(ok, key=lambda r: r["wall"]) if ok else None
    same_dt = next((r for r in out_rows[1:] if r["factor"] == 1.0), None)
    return {"case": name, "run_file": rel_path, "t_end": t_end, "t_end_file": base["time"]["t_end"],
            "window": window, "dt": base["time"]["dt"], "phase_per_step": phase_1x,
            "dropped": DROP.get(name, []),
            "reference": {"dt": ref_cfg["time"]["dt"], "save_every": ref_cfg["time"]["save_every"],
                          "window_node_phase": ref_cfg["numerics"]["window_node_phase"],
                          "edge_node_phase": ref_cfg["numerics"]["edge_node_phase"],
                          "wall": ref_run["wall"], "nodes": ref_run["nodes"]},
            "rows": out_rows, "failed_rows": failed_rows, "best_order4": best["label"] if best else None,
            "order4_same_dt": same_dt["label"] if same_dt else None}


# ------------------------------------------------------------------------------------------ output
def markdown(case: dict) -> str:
    ref = case["reference"]
    traj = any(r["errors"].get("trajectory_window") is not None for r in case["rows"])
    lines = [
        f"### {case['case']}: `{case['run_file']}`",
        "",
        f"dt = {case['dt']:g} ({case['phase_per_step']:g} rad per step at order 2), t_end = {case['t_end']:g}"
        + (f" (the file's {case['t_end_file']:g}, shortened)" if case["t_end"] != case["t_end_file"] else "")
        + f", window {case['window']:g}; reference: order 4 at dt = {ref['dt']:g} (save_every "
        f"{ref['save_every']}), window_node_phase {ref['window_node_phase']:g}, edge_node_phase "
        f"{ref['edge_node_phase']:g} ({ref['wall']:.1f} s; {ref['nodes']})."
        + (f" Dropped: {', '.join(case['dropped'])}." if case["dropped"] else ""),
        "",
        "| setting | dt | save_every | rad/step | nodes (observables; edge terms; frames) | wall [s] "
        "| start-up [s] | wall - start-up [s] | energy rel. err. | density err. | window err. (where) |"
        + (" trajectory window err. (where; not in the criterion) |" if traj else "")
        + " wall / order 2 | (wall - start-up) / order 2 | errors <= order 2 |",
        "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if traj else "") + "---|---|---|",
    ]
    for r in case["rows"]:
        e = r["errors"]
        note = f" ({'; '.join(r['notes'])})" if r["notes"] else ""
        tcol = f" {e['trajectory_window']:.2e} ({e['trajectory_window_where']}) |" if traj else ""
        lines.append(
            f"| {r['label']}{note} | {r['dt']:g} | {r['save_every']} | {r['phase']:.4g} | {r['nodes']} "
            f"| {r['wall']:.2f} | {r['startup']:.2f} | {r['net']:.2f} | {e['energy']:.2e} "
            f"| {e['density']:.2e} | {e['window']:.2e} ({e['window_where']}) |{tcol} {r['ratio_wall']:.3f} "
            f"| {r['ratio_net']:.3f} | {'yes' if r['as_accurate'] else 'no'} |")
    for r in case.get("failed_rows", []):
        note = f" ({'; '.join(r['notes'])})" if r["notes"] else ""
        lines.append(f"| {r['label']}{note} | {r['dt']:g} | {r['save_every']} | {r['phase']:.4g} | "
                     f"**the run failed** after {r['failed_wall']:.2f} s: {r['failed']} |")
    rows = {r["label"]: r for r in case["rows"]}
    o2 = case["rows"][0]
    lines.append("")
    if case["best_order4"]:
        b = rows[case["best_order4"]]
        lines.append(
            f"Equal accuracy: cheapest order-4 setting with all three errors <= order 2's: "
            f"**{b['label']}** (dt {b['dt']:g}), wall {b['wall']:.2f} s against {o2['wall']:.2f} s "
            f"(x{b['ratio_wall']:.3f}; without start-up {b['net']:.2f} s against {o2['net']:.2f} s, "
            f"x{b['ratio_net']:.3f}).")
    else:
        lines.append("Equal accuracy: no order-4 setting tried has all three errors <= order 2's.")
    if case["order4_same_dt"]:
        s = rows[case["order4_same_dt"]]
        lines.append(f"Order 4 at the file's dt: wall {s['wall']:.2f} s (x{s['ratio_wall']:.3f}; without "
                     f"start-up x{s['ratio_net']:.3f}).")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--factors", nargs="+", type=float, default=list(DEFAULT_FACTORS),
                    help="order-4 dt as multiples of the file's dt")
    ap.add_argument("--ref-divisor", type=float, default=4.0,
                    help="reference dt = dt / this; node phases divided by it too")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--t-end", nargs="*", default=[], metavar="CASE=T",
                    help="override a case's t_end (file's time unit); CASE=file for the file's own")
    ap.add_argument("--json", type=Path, help="write every number here")
    ap.add_argument("--markdown", type=Path, help="write the tables here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (run files, results)")
    ap.add_argument("--quick", action="store_true", help="smoke test: demo, t_end 4, one repeat")
    args = ap.parse_args()
    t_ends = {k: v for k, (_, v) in CASES.items()}
    for item in args.t_end:
        k, v = item.split("=")
        t_ends[k] = None if v == "file" else float(v)
    if args.quick:
        args.cases, args.repeats, t_ends["demo"] = ["demo"], 1, 4.0

    env = dict(os.environ)
    env.update(THREAD_ENV)
    scratch_root = Path(tempfile.mkdtemp(prefix="bohmpower_order_study_"))
    if str(scratch_root.resolve()).startswith(str(ROOT)):
        raise RuntimeError("the scratch folder must be outside the checkout")
    cache = scratch_root / "cache"
    cache.mkdir()
    machine = Path(os.environ.get("BOHMPOWER_CACHE_DIR") or Path.home() / ".cache" / "bohmpower")
    if (machine / "command_overhead.json").exists():
        shutil.copy(machine / "command_overhead.json", cache / "command_overhead.json")
    env["BOHMPOWER_CACHE_DIR"] = str(cache)

    def log(msg: str) -> None:
        print(msg, flush=True)

    log(f"scratch folder {scratch_root}; python {sys.executable}; load {os.getloadavg()}")
    t0 = time.perf_counter()
    results = []
    try:
        for name in args.cases:
            rel, _ = CASES[name]
            results.append(study_case(name, rel, t_ends[name], args, scratch_root, env, log))
            log("\n" + markdown(results[-1]))
            if args.json:
                args.json.write_text(json.dumps({"cases": results}, indent=1, default=str))
    finally:
        if not args.keep:
            shutil.rmtree(scratch_root, ignore_errors=True)
    total = time.perf_counter() - t0
    log(f"total {total:.0f} s; load {os.getloadavg()}")
    if args.markdown:
        args.markdown.write_text("\n".join(markdown(c) for c in results))
    if args.json:
        args.json.write_text(json.dumps({"cases": results, "total_s": total}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
