"""Figure of example 02: the finite-volume terms of two interacting electrons, exact against CW.

Usage::

    python examples/02_two_electrons_exact_vs_cw/plot.py \
        out02/exact.h5 out02/cw.h5 out02/cw_exchange.h5 \
        [--device device] [--cell cell] [-o fig.png]

Two rows (the finite volume ``device`` and the whole cell ``cell``) of three panels, all window averages
(windows of the run's ``[time] window``):

- interaction correlation P_C: exact line, CW estimates (mean +/- one standard error) with exchange off and on;
- quantum term: the exact non-local source/sink P_N and the exact P_S + P_N as lines, the CW estimates of
  P_S + P_N (the CW gives only the sum: its split needs derivatives across particles, docs/theory.md section 3);
- boundary flux P_B: exact line and the CW estimates.

In the finite volume the three are non-zero; over the whole cell each vanishes exactly (pair antisymmetry
for P_C, the integral of R^2 d_t Q for P_S + P_N, no flux through the grid's ends for P_B; docs/theory.md
section 3), so the exact lines lie on zero and the CW estimates must be consistent with it. Each panel's
title gives the largest exact field work P_J of its volume, the scale the other terms are measured against.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bohmpower.io import read_result  # noqa: E402

#: CW flavours: (label, marker, colour, horizontal offset in units of the window, so bars do not overlap)
FLAVOURS = (("CW, exchange off", "o", "tab:blue", -0.15), ("CW, exchange on", "s", "tab:red", 0.15))


def _cw_errorbar(ax, result: dict, volume: str, key: str, style: tuple, window: float) -> None:
    """Draw one CW window estimate with its standard error (markers at the window centres)."""
    label, marker, colour, shift = style
    win = result["volumes"][volume]["window"]
    t = win["t_start"] + (0.5 + shift) * window
    ax.errorbar(t, win[key], yerr=win[f"{key}_stderr"], fmt=marker, ms=3.0, color=colour, ecolor=colour,
                elinewidth=0.8, capsize=1.5, alpha=0.8, label=f"{label} (mean $\\pm$ s.e.)")


def plot(exact_path: Path, cw_paths: list[Path], device: str = "device", cell: str = "cell",
         output: Path | None = None) -> Path:
    """Draw the figure; return the PNG's path (beside the exact result unless ``output`` is given).

    Parameters
    ----------
    exact_path : Path
        Result of ``bohmpower exact`` (grid values of every term, P_N included).
    cw_paths : list of Path
        Results of ``bohmpower run`` with exchange off and on, in that order (one is enough).
    device, cell : str
        Names of the finite volume and of the whole-cell volume.
    output : Path, optional
        PNG to write.
    """
    exact = read_result(exact_path, fields=True)
    cws = [read_result(p, fields=True) for p in cw_paths]
    for name in (device, cell):
        for r in (exact, *cws):
            if name not in r["volumes"]:
                raise SystemExit(f"no volume {name!r} in {r['path']}; have {sorted(r['volumes'])}")
    t_unit = exact["units"]["time"]
    p_unit = exact["global_units"]["power"]
    x_unit = exact["units"]["x"]
    window = float(exact["attrs"]["window"])

    fig, axes = plt.subplots(2, 3, figsize=(14, 8), sharex=True)
    for row, name in zip(axes, (device, cell)):
        vol = exact["volumes"][name]
        win = vol["window"]
        tc = win["t_start"] + 0.5 * window  # window centres
        attrs = vol["attrs"]
        pj = np.max(np.abs(win["field_work"]))
        where = f"'{name}' [{attrs['x_min']:g}, {attrs['x_max']:g}] {x_unit}"
        scale = f"max |P_J| = {pj:.2g} {p_unit}"

        ax = row[0]
        ax.plot(tc, win["interaction"], color="k", lw=1.8, label="exact $P_C$")
        for r, style in zip(cws, FLAVOURS):
            _cw_errorbar(ax, r, name, "interaction", style, window)
        ax.set_title(f"{where}: interaction $P_C$\n({scale})", fontsize=9)

        ax = row[1]
        ax.plot(tc, win["quantum_nonlocal"], color="tab:green", lw=1.8,
                label="exact $P_N$ (non-local source/sink)")
        ax.plot(tc, win["quantum"], color="k", lw=1.2, ls="--", label="exact $P_S + P_N$")
        for r, style in zip(cws, FLAVOURS):
            _cw_errorbar(ax, r, name, "quantum", style, window)
        ax.set_title(f"{where}: quantum term\n(CW gives only $P_S + P_N$)", fontsize=9)

        ax = row[2]
        ax.plot(tc, win["boundary_flux"], color="k", lw=1.8, label="exact $P_B$")
        for r, style in zip(cws, FLAVOURS):
            _cw_errorbar(ax, r, name, "boundary_flux", style, window)
        ax.set_title(f"{where}: boundary flux $P_B$", fontsize=9)

        for ax in row:
            ax.axhline(0.0, color="0.7", lw=0.8, zorder=0)
            ax.legend(fontsize=7, loc="best")
        row[0].set_ylabel(f"window-averaged power [{p_unit}]")
    for ax in axes[1]:
        ax.set_xlabel(f"time (window centre) [{t_unit}]")

    fig.suptitle("two interacting electrons: finite-volume terms (top) vanish over the whole cell (bottom); "
                 f"windows of {window:g} {t_unit}", fontsize=11)
    fig.tight_layout()
    out = Path(output) if output is not None else Path(exact_path).with_suffix(".png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exact", type=Path, help="result of `bohmpower exact exact.toml`")
    parser.add_argument("cw", type=Path, nargs="+",
                        help="results of `bohmpower run cw.toml` and `cw_exchange.toml`, in that order")
    parser.add_argument("--device", default="device", help="finite volume (top row)")
    parser.add_argument("--cell", default="cell", help="whole-cell volume (bottom row)")
    parser.add_argument("-o", "--output", type=Path, default=None, help="PNG (default: beside exact.h5)")
    args = parser.parse_args(argv)
    if len(args.cw) > len(FLAVOURS):
        parser.error("at most two CW results (exchange off, exchange on)")
    out = plot(args.exact, args.cw, args.device, args.cell, args.output)
    print(f"figure: {out}")


if __name__ == "__main__":
    main()
