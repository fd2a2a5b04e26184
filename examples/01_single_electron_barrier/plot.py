"""Figure of example 01: one electron through a biased barrier, energy and power per volume.

Usage::

    python examples/01_single_electron_barrier/plot.py out.h5 [--volumes before barrier after] [-o fig.png]

Top left: the potential energy U0(x) + q phi(x) the electron sees (phi rebuilt from the stored field
shape), the initial density and the volumes. Top right: the energy E_Omega(t) in each volume, grid
values as lines, trajectory estimates (mean +/- one standard error) as markers. Bottom row, one panel
per volume: the window-averaged power P_Omega = (E_Omega(t + T) - E_Omega(t))/T and its split into
field work P_J, quantum term P_S + P_N and boundary flux P_B (grid lines, trajectory markers with error
bars). For one electron the interaction term is zero and the quantum term is a pure surface term
(docs/theory.md section 3), so P_Omega = P_J + P_Q + P_B - A_Omega with A_Omega = 0 away from the absorbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bohmpower.io import read_result  # noqa: E402

#: window terms drawn per volume: (dataset name, label, colour)
TERMS = (
    ("power", r"$P_\Omega = dE_\Omega/dt$", "k"),
    ("field_work", r"field work $P_J$", "tab:red"),
    ("quantum", r"quantum $P_S + P_N$", "tab:green"),
    ("boundary_flux", r"boundary flux $P_B$", "tab:blue"),
)
VOLUME_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown")


def drive_potential(path: Path, x: np.ndarray) -> np.ndarray:
    """q phi(x) at the last stored frame, shape (n_x,), in the file's energy unit.

    The file stores E(x) per drive (/model/field_shape) and f(t) (/model/time_profile); the force on
    an electron (q = -e) is q E = -E f, so q phi = -integral q E dx = integral E f dx, set to 0 at x_min.
    """
    with h5py.File(path, "r") as f:
        shape = f["model/field_shape"][()]  # (n_f, n_x)
        profile = f["model/time_profile"][()]  # (n_f, n_t)
    e_field = np.einsum("f,fx->x", profile[:, -1], shape)
    dx = x[1] - x[0]
    # trapezoid cumulative integral from the left end
    qphi = np.concatenate(([0.0], np.cumsum(0.5 * (e_field[1:] + e_field[:-1]) * dx)))
    return qphi


def _errorbars(ax, t, mean, err, colour, label=None) -> None:
    ax.errorbar(t, mean, yerr=err, fmt="o", ms=3, color=colour, ecolor=colour, elinewidth=0.8,
                capsize=1.5, alpha=0.8, label=label)


def plot(path: Path, volumes: list[str] | None = None, output: Path | None = None) -> Path:
    """Draw the figure; return the PNG's path (beside the result unless ``output`` is given)."""
    result = read_result(path, fields=True)
    names = volumes or [v for v in ("before", "barrier", "after") if v in result["volumes"]]
    missing = [v for v in names if v not in result["volumes"]]
    if missing or not names:
        raise SystemExit(f"no volume(s) {missing} in {path}; have {sorted(result['volumes'])}")
    est = result.get("trajectory_estimates", {})
    t = result["time"]
    t_unit, x_unit = result["units"]["time"], result["units"]["x"]
    x = result["x"]
    e_unit = result["volumes"][names[0]]["units"]["energy"]
    p_unit = result["volumes"][names[0]]["units"]["power"]
    window = float(result["attrs"].get("window", np.nan))

    fig = plt.figure(figsize=(4.2 * len(names), 8.2))
    grid = fig.add_gridspec(2, len(names))
    land = fig.add_subplot(grid[0, 0])
    energy = fig.add_subplot(grid[0, 1:])
    bottom = [fig.add_subplot(grid[1, i]) for i in range(len(names))]

    # the landscape: U0 + q phi, the densities at start and end, the volumes
    u0 = result.get("U0", np.zeros_like(x))
    landscape = u0 + drive_potential(Path(path), x)
    land.plot(x, landscape, color="k", lw=1.5, label=r"$U_0 + q\phi$")
    land.set_xlabel(f"x [{x_unit}]")
    land.set_ylabel(f"potential energy [{result.get('U0_units', e_unit)}]")
    dens = land.twinx()
    n_unit = result["field_units"]["density"]
    for k, ls in ((0, ":"), (len(t) // 2, "--"), (-1, "-")):
        dens.plot(x, result["fields"]["density"][k], color="0.45", ls=ls, lw=1.0,
                  label=f"n(x) at t = {t[k]:g} {t_unit}")
    dens.set_ylabel(f"density [{n_unit}]")
    for i, name in enumerate(names):
        a = result["volumes"][name]["attrs"]
        land.axvspan(a["x_min"], a["x_max"], color=VOLUME_COLOURS[i], alpha=0.18, lw=0, label=name)
    lo = min(result["volumes"][n]["attrs"]["x_min"] for n in names)
    hi = max(result["volumes"][n]["attrs"]["x_max"] for n in names)
    land.set_xlim(lo - 35.0 * (x[1] - x[0]) - 0.5 * (hi - lo), hi + 0.5 * (hi - lo))
    h1, l1 = land.get_legend_handles_labels()
    h2, l2 = dens.get_legend_handles_labels()
    land.legend(h1 + h2, l1 + l2, fontsize=6.5, loc="lower left", framealpha=0.9)
    land.set_title("potential, density and volumes", fontsize=10)

    # E_Omega(t): grid lines, trajectory estimates on top
    for i, name in enumerate(names):
        c = VOLUME_COLOURS[i]
        energy.plot(t, result["volumes"][name]["data"]["energy"], color=c, lw=1.8,
                    label=f"{name} (grid)")
        if name in est:
            d = est[name]["data"]
            _errorbars(energy, t, d["energy"], d["energy_stderr"], c, label=f"{name} (trajectories)")
    energy.axhline(0.0, color="0.7", lw=0.8)
    energy.set_xlabel(f"time [{t_unit}]")
    energy.set_ylabel(rf"energy in the volume $E_\Omega$ [{e_unit}]")
    energy.legend(fontsize=8, ncol=2, loc="upper left")
    samples = int(result["attrs"].get("samples", 0))
    energy.set_title(f"energy in each volume: grid (lines) and {samples} Bohmian trajectories "
                     "(markers, $\\pm$ 1 standard error)", fontsize=10)

    # window-averaged power split, one panel per volume
    for ax, name in zip(bottom, names):
        win = result["volumes"][name]["window"]
        tw = win["t_start"]
        for key, label, c in TERMS:
            ax.plot(tw, win[key], color=c, lw=2.2 if key == "power" else 1.4, label=label)
            if name in est:
                ew = est[name]["window"]
                _errorbars(ax, ew["t_start"], ew[key], ew[f"{key}_stderr"], c)
        # the absorbing layers lie outside these volumes; draw A_Omega only where it is visible
        if np.max(np.abs(win["absorbed"])) > 1e-3 * np.max(np.abs(win["power"])):
            ax.plot(tw, -win["absorbed"], color="0.5", lw=1.0, ls="--", label=r"absorbed $-A_\Omega$")
        ax.axhline(0.0, color="0.7", lw=0.8)
        a = result["volumes"][name]["attrs"]
        edge = f"smoothing {a['smoothing']:g}" if a.get("smoothing", 0.0) else "sharp"
        ax.set_title(f"'{name}' [{a['x_min']:g}, {a['x_max']:g}] {x_unit}, {edge};\n"
                     f"averages over windows of {window:g} {t_unit}", fontsize=9)
        ax.set_xlabel(f"time (window start) [{t_unit}]")
        ax.set_ylabel(f"window-averaged power [{p_unit}]", fontsize=8)
    bottom[0].legend(fontsize=8, loc="upper left", title="lines: grid; markers: trajectories",
                     title_fontsize=7)

    title = str(result["attrs"].get("config", ""))
    title = next((ln.split("=", 1)[1].strip().strip('"') for ln in title.splitlines()
                  if ln.startswith("title")), "one electron through a biased barrier")
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    out = Path(output) if output is not None else Path(path).with_suffix(".png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="result file of `bohmpower exact run.toml`")
    parser.add_argument("--volumes", nargs="+", default=None,
                        help="volumes of the bottom row (default: before barrier after)")
    parser.add_argument("-o", "--output", type=Path, default=None, help="PNG (default: beside the result)")
    args = parser.parse_args(argv)
    out = plot(args.result, args.volumes, args.output)
    print(f"figure: {out}")


if __name__ == "__main__":
    main()
