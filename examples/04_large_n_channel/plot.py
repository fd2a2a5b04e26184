"""Figure of example 04: the spatial map of field work against the quantum term along a biased channel.

Usage::

    python examples/04_large_n_channel/plot.py out.h5 [--t-min T] [--t-max T] [-o fig.png]

Top panel: for each volume whose name starts with ``ch`` (the tiles of the channel), drawn at its
centre, the time average over the windows starting in [t_min, t_max) of the field work P_J and of the
quantum term P_S + P_N, with error bars of one standard error, and the total power P_Omega of the tile
as a line. Bottom panel: the density n(x, t) of /fields/density with the channel tiles and the ramp
of the drive marked.

Notes
-----
The time average of a term over the n_w chosen windows is (1/n_w) sum_w P_w. Its standard error is
bounded by the mean of the window standard errors,

    se(mean) <= (1/n_w) sum_w se_w,

with equality when the windows' errors are perfectly correlated (they are positively correlated: every
window is estimated from the same worlds). The plot draws this bound, which never understates the error;
(1/n_w) sqrt(sum_w se_w^2), the value for independent windows, would.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from bohmpower.io import read_result

#: window terms of the top panel: (dataset name, label, colour, marker)
TERMS = (
    ("field_work", "field work $P_J$", "tab:red", "o"),
    ("quantum", "quantum term $P_S + P_N$", "tab:blue", "s"),
)


def channel_volumes(result: dict, prefix: str = "ch") -> list[str]:
    """Names of the channel tiles (volumes whose name starts with ``prefix``), ordered by their centre."""
    vols = result["volumes"]
    names = [n for n in vols if n.startswith(prefix)]
    return sorted(names, key=lambda n: vols[n]["attrs"]["x_min"] + vols[n]["attrs"]["x_max"])


def time_average(window: dict, name: str, t_min: float = -np.inf,
                 t_max: float = np.inf) -> tuple[float, float]:
    """Mean of the window averages of ``name`` over windows starting in [t_min, t_max), and its error.

    Returns ``(mean, stderr)`` in the file's power unit; the error is the mean of the window standard
    errors, an upper bound on the standard error of the mean (module Notes). Raises ``ValueError``
    when no window starts in the range.
    """
    t = window["t_start"]
    sel = (t >= t_min) & (t < t_max)
    if not np.any(sel):
        raise ValueError(f"no window starts in [{t_min}, {t_max}); windows start at {t[0]:g} .. {t[-1]:g}")
    values = window[name][sel]
    errors = window.get(f"{name}_stderr", np.zeros_like(values))[sel]
    return float(np.mean(values)), float(np.mean(errors))


def spatial_map(result: dict, t_min: float = -np.inf, t_max: float = np.inf,
                prefix: str = "ch") -> dict:
    """Time-averaged terms of every channel tile.

    Returns a dict with ``names``, ``center`` and ``half_width`` (length unit, (n_v,)), and for
    ``power`` and every name of TERMS the arrays ``<name>`` and ``<name>_stderr`` ((n_v,), power unit).
    """
    names = channel_volumes(result, prefix)
    if not names:
        raise SystemExit(f"no volume named {prefix}* in {result['path']}; have {sorted(result['volumes'])}")
    attrs = [result["volumes"][n]["attrs"] for n in names]
    out: dict = {
        "names": names,
        "center": np.array([(a["x_min"] + a["x_max"]) / 2 for a in attrs]),
        "half_width": np.array([(a["x_max"] - a["x_min"]) / 2 for a in attrs]),
    }
    for key in ("power",) + tuple(t[0] for t in TERMS):
        pairs = [time_average(result["volumes"][n]["window"], key, t_min, t_max) for n in names]
        out[key] = np.array([p[0] for p in pairs])
        out[f"{key}_stderr"] = np.array([p[1] for p in pairs])
    return out


def plot(path: Path, t_min: float = -np.inf, t_max: float = np.inf,
         output: Path | None = None) -> Path:
    """Draw the figure; return the PNG's path (beside the result unless ``output`` is given)."""
    result = read_result(path, fields=True)
    smap = spatial_map(result, t_min, t_max)
    x_unit, t_unit = result["units"]["x"], result["units"]["time"]
    p_unit = result["volumes"][smap["names"][0]]["units"].get("power", "hartree/atomic_unit_of_time")
    n_unit = result["field_units"].get("density", f"1/{x_unit}")
    config = tomllib.loads(str(result["attrs"].get("config", "")))

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 8.5))
    top.plot(smap["center"], smap["power"], color="k", lw=1.5, label=r"total $P_\Omega = dE_\Omega/dt$")
    for shift, (name, label, colour, marker) in zip((-0.12, 0.12), TERMS):
        # a small horizontal offset keeps overlapping error bars apart
        top.errorbar(smap["center"] + shift * smap["half_width"], smap[name],
                     yerr=smap[f"{name}_stderr"], fmt=marker, color=colour, capsize=3, ms=5,
                     label=label)
    top.axhline(0.0, color="0.7", lw=0.8)
    t_win = result["volumes"][smap["names"][0]]["window"]["t_start"]
    sel = t_win[(t_win >= t_min) & (t_win < t_max)]
    window = float(result["attrs"].get("window", np.nan))
    top.set_title(f"time average over {sel.size} windows of {window:g} {t_unit} "
                  f"(t = {sel[0]:g} .. {sel[-1] + window:g}); bars: one standard error", fontsize=9)
    top.set_xlabel(f"volume centre x [{x_unit}]")
    top.set_ylabel(f"time-averaged power [{p_unit}]")
    top.legend(fontsize=8, loc="best")

    x, t = result["x"], result["time"]
    density = result["fields"]["density"]
    mesh = bottom.pcolormesh(x, t, density, shading="auto", cmap="viridis")
    fig.colorbar(mesh, ax=bottom, label=f"density n(x, t) [{n_unit}]")
    lo = min(result["volumes"][n]["attrs"]["x_min"] for n in smap["names"])
    hi = max(result["volumes"][n]["attrs"]["x_max"] for n in smap["names"])
    for edge in sorted({result["volumes"][n]["attrs"][k] for n in smap["names"] for k in ("x_min", "x_max")}):
        bottom.axvline(edge, color="w", lw=0.5, ls=":", alpha=0.7)
    for drive in config.get("field", []):
        if drive.get("kind") == "linear_drop":
            bottom.axvspan(drive["x_left"], drive["x_right"], color="w", alpha=0.08, lw=0)
    bottom.set_title(f"density; dotted lines: the channel tiles [{lo:g}, {hi:g}] {x_unit}", fontsize=9)
    bottom.set_xlabel(f"x [{x_unit}]")
    bottom.set_ylabel(f"time [{t_unit}]")

    n_el = int(result["attrs"].get("n_particles", 0))
    samples = int(result["attrs"].get("samples", 0))
    title = config.get("title", "") or "large-N channel"
    fig.suptitle(f"{title}\n({n_el} electrons, {samples} worlds)", fontsize=10)
    fig.tight_layout()
    out = Path(output) if output is not None else Path(path).with_suffix(".png")
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="result file of `bohmpower run run.toml`")
    parser.add_argument("--t-min", type=float, default=-np.inf, help="first window start to average")
    parser.add_argument("--t-max", type=float, default=np.inf, help="average windows starting before this")
    parser.add_argument("-o", "--output", type=Path, default=None, help="PNG (default: beside the result)")
    args = parser.parse_args(argv)
    out = plot(args.result, args.t_min, args.t_max, args.output)
    print(f"figure: {out}")


if __name__ == "__main__":
    main()
