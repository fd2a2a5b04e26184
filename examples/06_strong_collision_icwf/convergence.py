"""Example 06: the interacting scheme's error against its basis size, beside zeroth order.

    python examples/06_strong_collision_icwf/convergence.py OUT_DIR [--sizes 8 16 32 64 128]

Needs OUT_DIR/exact.h5 (``bohmpower exact exact.toml -o OUT_DIR/exact.h5``) and, for the zeroth-order
line, OUT_DIR/zeroth.h5. For every basis size M it writes OUT_DIR/icwf_M.toml (icwf.toml with
``basis_size = M``), runs ``bohmpower run`` on it unless OUT_DIR/icwf_M.h5 exists, and compares each
result with the exact one through ``bohmpower.compare.compare_files``, the code behind ``bohmpower
compare``. It prints one row per run: the wall time, the largest |z| of E_Omega, and the largest |z|
over every volume and term (whole-cell rows of the terms that vanish there identically left out: they
compare round-off with a zero error bar). It also draws OUT_DIR/convergence.png: both against M, with
the zeroth-order values as lines and the Bonferroni bound that ``compare`` tests against.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np

from bohmpower.compare import compare_files
from bohmpower.io import read_result

HERE = Path(__file__).resolve().parent
#: Zero over the whole cell for every engine (pair antisymmetry, surface terms).
WHOLE_CELL_ZERO = ("interaction", "quantum", "boundary_flux")


def write_variant(out: Path, m: int, template: Path) -> Path:
    """The template (icwf.toml) with basis_size m, written as OUT_DIR/icwf_m.toml."""
    text = template.read_text()
    assert tomllib.loads(text)["method"]["basis_size"] == 64
    path = out / f"icwf_{m}.toml"
    path.write_text(text.replace("basis_size = 64 ", f"basis_size = {m} ", 1))
    assert tomllib.loads(path.read_text())["method"]["basis_size"] == m
    return path


def summary(exact: Path, other: Path) -> dict:
    cmp = compare_files(exact, other)
    rows = [r for r in cmp.rows if r.agreement is not None
            and not (r.volume == "all" and r.quantity in WHOLE_CELL_ZERO)]
    z = [(r.quantity, r.agreement.max_abs_z) for r in rows]
    return {"max_z": float(np.nanmax([v for _, v in z])),
            "energy_z": float(np.nanmax([v for q, v in z if q == "energy"])),
            "bound": cmp.overall.max_bound,
            "wall": float(read_result(other)["attrs"].get("wall_time", np.nan))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--sizes", nargs="*", type=int, default=[8, 16, 32, 64, 128])
    ap.add_argument("--template", type=Path, default=HERE / "icwf.toml",
                    help="run file whose basis_size (64) is varied (default: icwf.toml here)")
    args = ap.parse_args()
    exact = args.out / "exact.h5"
    if not exact.exists():
        sys.exit(f"{exact} is missing: run `bohmpower exact {HERE / 'exact.toml'} -o {exact}` first")
    rows = {}
    zeroth = args.out / "zeroth.h5"
    if zeroth.exists():
        rows["zeroth order"] = summary(exact, zeroth)
    for m in args.sizes:
        h5 = args.out / f"icwf_{m}.h5"
        if not h5.exists():
            run = write_variant(args.out, m, args.template)
            subprocess.run([sys.executable, "-m", "bohmpower", "run", str(run), "-o", str(h5), "-q"],
                           check=True)
        rows[f"M = {m}"] = summary(exact, h5)
    print(f"{'run':>14} {'wall [s]':>9} {'max |z| E_Omega':>16} {'max |z| all':>12}")
    for name, r in rows.items():
        print(f"{name:>14} {r['wall']:9.0f} {r['energy_z']:16.1f} {r['max_z']:12.1f}")
    bound = next(iter(rows.values()))["bound"]
    print(f"agreement bound (Bonferroni, alpha = 0.001): max |z| <= {bound:.2f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    sizes = [m for m in args.sizes]
    for key, label, color in (("max_z", "largest |z|, all terms", "C0"),
                              ("energy_z", "largest |z|, E_Omega", "C1")):
        ax.plot(sizes, [rows[f"M = {m}"][key] for m in sizes], "o-", color=color,
                label=f"interacting: {label}")
        if "zeroth order" in rows:
            ax.axhline(rows["zeroth order"][key], color=color, ls="--", label=f"zeroth order: {label}")
    ax.axhline(bound, color="k", ls=":", lw=0.8, label="agreement bound")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("basis size M (basis worlds)")
    ax.set_ylabel("|exact - estimate| / standard error")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "convergence.png", dpi=110)
    print(f"figure: {args.out / 'convergence.png'}")


if __name__ == "__main__":
    main()
