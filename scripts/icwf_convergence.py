"""Convergence of the interacting scheme (ICWF) against the exact solver, beside zeroth order.

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 python scripts/icwf_convergence.py --scratch /tmp/icwf_study

For each strong-collision case of ``scripts/accuracy_study.py`` (``n2_strong``: two fermions meeting
head-on in a biased region with a barrier; ``n3_strong``: a three-body collision in a bias) and for
``n2_tunnel`` (two fermions arriving from the same side at a barrier higher than their kinetic
energies, in a bias, colliding as they tunnel; defined here) it runs
``bohmpower exact`` once, ``bohmpower run`` at zeroth order (exchange through the initial slice, the
default) and with ``[method] scheme = "interacting"`` at each basis size, all with the same samples and
seed, and compares every run with ``bohmpower.compare.compare_files`` (the code behind ``bohmpower
compare``). Written:

- ``SCRATCH/icwf_convergence.md``: per case, one row per setting: wall time, the largest |z| over all
  volumes and terms (whole-cell rows of terms that vanish identically left out), compare's RMS z and
  verdict, and the largest |z| of E_Omega and of each term;
- ``SCRATCH/icwf_convergence.json``: the same numbers;
- ``docs/figures/icwf_convergence.png``: largest |z| against the basis size and against the wall time
  (``SCRATCH/icwf_convergence.png`` when only some of the three cases ran; ``--figure-only`` draws
  the docs' figure from the JSON files of several partial runs).

``--only CASE``, ``--sizes 8 16 32``, ``--samples M``, ``--reuse`` (skip runs whose file exists),
``--seed S`` (other samples and basis worlds), ``--overlap-cutoff C`` (the interacting runs'
``[method] overlap_cutoff``).
``--only`` also takes the controls of the accuracy study (``n2_free``, ``n2_weak``, ``n3_free``,
``n3_weak``: no or weak interaction), where both settings should agree with the exact solver.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import time
from pathlib import Path

import numpy as np

from bohmpower.compare import compare_files

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("accuracy_study", REPO / "scripts" / "accuracy_study.py")
acc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(acc)

CASES = ("n2_strong", "n3_strong", "n2_tunnel")
#: The controls of scripts/accuracy_study.py (no or weak interaction), run with ``--only``.
CONTROLS = ("n2_free", "n2_weak", "n3_free", "n3_weak")


def _tunnel_case() -> tuple[dict, str]:
    """Two fermions sent the same way through a barrier higher than either's kinetic energy, in a
    bias: the faster one catches up with the slower near the barrier (strong soft Coulomb pair), so
    tunnelling and the collision happen together. Same cell, absorbers and volumes as n2_strong."""
    d = copy.deepcopy(acc._N2)
    d["potential"] = [{"kind": "barrier", "center": 0.0, "width": 2.0, "height": 1.0,
                       "smoothing": 0.3}]
    d["field"] = [{"kind": "linear_drop", "bias": 0.5, "x_left": -10.0, "x_right": 10.0,
                   "smoothing": 1.0}]
    d["initial"] = {"packet": [{"center": -26.0, "width": 2.5, "wavenumber": 1.3},
                               {"center": -14.0, "width": 2.5, "wavenumber": 0.9}]}
    d["interaction"] = dict(acc.STRONG)
    title = "N = 2 same-side arrival at a barrier above both energies, in a bias, strong"
    d["title"] = f"icwf convergence: {title}"
    return d, title


def case_dicts(name: str) -> tuple[dict, dict, str]:
    """(exact run, zeroth-order CW run without samples set, title) of a case."""
    if name == "n2_tunnel":
        exact, title = _tunnel_case()
        cw = copy.deepcopy(exact)
        cw["method"] = {"exchange": False}
        return exact, cw, title
    exact, cws = acc.run_dicts(name)
    return exact, cws["off"], acc.CASES[name][4]
TERMS = ("energy", "power", "interaction", "quantum", "quantum_flux", "quantum_nonlocal", "boundary_flux",
         "field_work")


def run_files(name: str, samples: int, sizes: list[int], seed: int = acc.SEED,
              overlap_cutoff: float | None = None) -> tuple[dict, dict]:
    exact, cw, _ = case_dicts(name)
    base = copy.deepcopy(cw)
    base["trajectories"] = {"count": samples, "seed": int(seed), "store": 2}
    runs = {"zeroth_order": base}
    for m in sizes:
        d = copy.deepcopy(base)
        d["method"] = {"scheme": "interacting", "exchange": True, "basis_size": m}
        if overlap_cutoff is not None:
            d["method"]["overlap_cutoff"] = float(overlap_cutoff)
        runs[f"icwf_{m}"] = d
    return exact, runs


#: Terms that vanish identically over the whole cell (pair antisymmetry, surface terms): their
#: whole-cell rows compare round-off with a zero error bar, not physics, and are left out.
WHOLE_CELL_ZERO = ("interaction", "quantum", "boundary_flux")


def summarise(cmp) -> dict:
    rows = [r for r in cmp.rows if r.agreement is not None
            and not (r.volume == "all" and r.quantity in WHOLE_CELL_ZERO)]
    out = {"overall_rms_z": cmp.overall.rms_z, "ok": cmp.overall.ok,
           "overall_max_z": float(np.nanmax([r.agreement.max_abs_z for r in rows])),
           "rms_bound": cmp.overall.rms_bound, "max_bound": cmp.overall.max_bound, "per_term": {}}
    for t in TERMS:
        zs = [r.agreement.max_abs_z for r in rows if r.quantity == t]
        if zs:
            out["per_term"][t] = float(np.nanmax(zs))
    return out


def study(name: str, scratch: Path, samples: int, sizes: list[int], reuse: bool,
          seed: int = acc.SEED, overlap_cutoff: float | None = None) -> dict:
    folder = scratch / name
    folder.mkdir(parents=True, exist_ok=True)
    exact, runs = run_files(name, samples, sizes, seed, overlap_cutoff)
    pe = folder / "exact.toml"
    pe.write_text(acc.to_toml(exact))
    he = pe.with_suffix(".h5")
    if not (reuse and he.exists()):
        acc._bohmpower("exact", pe, "-o", he, "--overwrite", "-q")
    rec = {"case": name, "title": case_dicts(name)[2], "samples": samples, "seed": seed,
           "overlap_cutoff": overlap_cutoff, "runs": {}}
    for tag, d in runs.items():
        p = folder / f"{tag}.toml"
        p.write_text(acc.to_toml(d))
        h = p.with_suffix(".h5")
        if not (reuse and h.exists()):
            t0 = time.perf_counter()
            acc._bohmpower("run", p, "-o", h, "--overwrite", "-q")
            print(f"{name} {tag}: {time.perf_counter() - t0:.1f} s", flush=True)
        info = acc._file_info(h)
        cmp = compare_files(he, h)
        rec["runs"][tag] = {"wall_time": info["wall_time"], **summarise(cmp)}
        print(f"  max |z| {rec['runs'][tag]['overall_max_z']:.2f}  ok {cmp.overall.ok}", flush=True)
    return rec


def table(rec: dict) -> str:
    lines = [f"### {rec['case']}: {rec['title']} ({rec['samples']} samples)", "",
             "| setting | wall time [s] | max \\|z\\| (all) | RMS z | verdict | "
             + " | ".join(f"max \\|z\\| {t}" for t in TERMS) + " |",
             "|---|---|---|---|---|" + "---|" * len(TERMS)]
    for tag, r in rec["runs"].items():
        verdict = "agree" if r["ok"] else "DISAGREE"
        # "-": not estimated by that setting (zeroth order has no P_S / P_N split)
        terms = " | ".join(f"{r['per_term'][t]:.1f}" if t in r["per_term"] else "-" for t in TERMS)
        lines.append(f"| {tag} | {r['wall_time']:.0f} | {r['overall_max_z']:.1f} | "
                     f"{r['overall_rms_z']:.2f} | {verdict} | {terms} |")
    first = next(iter(rec["runs"].values()))
    lines.append("")
    lines.append(f"Bounds: RMS z <= {first['rms_bound']:.2f}, max |z| <= {first['max_bound']:.2f} "
                 f"(Bonferroni, alpha = {acc.ALPHA}).")
    return "\n".join(lines)


def figure(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for rec in records:
        runs = rec["runs"]
        sizes = [int(t.split("_")[1]) for t in runs if t.startswith("icwf_")]
        zs = [runs[f"icwf_{m}"]["overall_max_z"] for m in sizes]
        ts = [runs[f"icwf_{m}"]["wall_time"] for m in sizes]
        (line,) = axes[0].plot(sizes, zs, "o-", label=f"{rec['case']} interacting")
        axes[0].axhline(runs["zeroth_order"]["overall_max_z"], ls="--", color=line.get_color(),
                        label=f"{rec['case']} zeroth order")
        axes[1].plot(ts, zs, "o-", color=line.get_color(), label=f"{rec['case']} interacting")
        axes[1].plot([runs["zeroth_order"]["wall_time"]], [runs["zeroth_order"]["overall_max_z"]],
                     "s", color=line.get_color(), label=f"{rec['case']} zeroth order")
        bound = runs["zeroth_order"]["max_bound"]
    for ax in axes:
        ax.axhline(bound, color="k", lw=0.8, ls=":", label="Bonferroni bound")
        ax.set_yscale("log")
        ax.set_ylabel("largest |z| (all volumes and terms)")
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("basis size (basis worlds)")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("wall time of the run [s]")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scratch", type=Path, required=True)
    ap.add_argument("--only", nargs="*", choices=CASES + CONTROLS)
    ap.add_argument("--sizes", nargs="*", type=int, default=[8, 16, 32, 64])
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--seed", type=int, default=acc.SEED,
                    help="seed of the samples and of the basis worlds (default: the accuracy study's)")
    ap.add_argument("--overlap-cutoff", type=float, default=None,
                    help="[method] overlap_cutoff of the interacting runs (default: the run file's)")
    ap.add_argument("--figure-only", nargs="*", type=Path, default=None,
                    help="draw the figure from these icwf_convergence.json files and stop")
    args = ap.parse_args()
    if args.figure_only:
        records = [r for p in args.figure_only for r in json.loads(p.read_text())]
        figure(records, REPO / "docs" / "figures" / "icwf_convergence.png")
        return
    args.scratch.mkdir(parents=True, exist_ok=True)
    records = [study(n, args.scratch, args.samples, args.sizes, args.reuse, args.seed,
                     args.overlap_cutoff)
               for n in (args.only or CASES)]
    (args.scratch / "icwf_convergence.json").write_text(json.dumps(records, indent=1))
    text = "\n\n".join(table(r) for r in records)
    (args.scratch / "icwf_convergence.md").write_text(text + "\n")
    print(text)
    # the docs' figure shows the three cases; a partial study draws its own into SCRATCH
    full = set(CASES) <= {r["case"] for r in records}
    figure(records, REPO / "docs" / "figures" / "icwf_convergence.png" if full
           else args.scratch / "icwf_convergence.png")


if __name__ == "__main__":
    main()
