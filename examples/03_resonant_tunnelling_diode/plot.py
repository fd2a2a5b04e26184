"""Figure of example 03: where a biased resonant-tunnelling diode takes its power in and where it leaves.

Usage::

    python examples/03_resonant_tunnelling_diode/plot.py out.h5 [-o fig.png]

Left: the potential energy U0(x) + q phi(x) (double barrier plus the bias drop, q phi rebuilt from the
stored field shape), the density at three times and the volumes emitter / well / collector. Right, one
panel per volume: the window-averaged power P_Omega and its split into field work P_J, quantum term
P_S + P_N and boundary flux P_B, all in the file's units (eV/fs in device units). One electron: the
interaction term is zero (docs/theory.md section 3).
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
VOLUMES = ("emitter", "well", "collector")
VOLUME_COLOURS = ("tab:blue", "tab:orange", "tab:green")


def drive_potential(path: Path, x: np.ndarray) -> np.ndarray:
    """q phi(x) at the last stored frame, shape (n_x,), in the file's energy unit.

    The file stores E(x) per drive (/model/field_shape, force / q) and f(t) (/model/time_profile); the
    force on an electron is q E, so q phi = -integral q E dx, i.e. the integral of -(force), set to 0
    at x_min. With q = -e and E = force / q this is the cumulative integral of E f.
    """
    with h5py.File(path, "r") as f:
        shape = f["model/field_shape"][()]  # (n_f, n_x)
        profile = f["model/time_profile"][()]  # (n_f, n_t)
    e_field = np.einsum("f,fx->x", profile[:, -1], shape)
    dx = x[1] - x[0]
    return np.concatenate(([0.0], np.cumsum(0.5 * (e_field[1:] + e_field[:-1]) * dx)))


def plot(path: Path, output: Path | None = None) -> Path:
    """Draw the figure; return the PNG's path (beside the result unless ``output`` is given)."""
    result = read_result(path, fields=True)
    missing = [v for v in VOLUMES if v not in result["volumes"]]
    if missing:
        raise SystemExit(f"no volume(s) {missing} in {path}; have {sorted(result['volumes'])}")
    t, x = result["time"], result["x"]
    t_unit, x_unit = result["units"]["time"], result["units"]["x"]
    p_unit = result["volumes"][VOLUMES[0]]["units"]["power"]
    u_unit = result.get("U0_units", result["volumes"][VOLUMES[0]]["units"]["energy"])
    window = float(result["attrs"].get("window", np.nan))

    fig, axes = plt.subplots(1, 4, figsize=(18.0, 4.6), gridspec_kw={"width_ratios": [1.25, 1, 1, 1]})
    land = axes[0]
    landscape = result.get("U0", np.zeros_like(x)) + drive_potential(Path(path), x)
    land.plot(x, landscape, color="k", lw=1.5, label=r"$U_0 + q\phi$")
    for i, name in enumerate(VOLUMES):
        a = result["volumes"][name]["attrs"]
        land.axvspan(a["x_min"], a["x_max"], color=VOLUME_COLOURS[i], alpha=0.18, lw=0, label=name)
    land.set_xlim(-45.0, 45.0)
    land.set_xlabel(f"x [{x_unit}]")
    land.set_ylabel(f"potential energy [{u_unit}]")
    dens = land.twinx()
    n_unit = result["field_units"]["density"]
    rho = result["fields"]["density"]
    # density when the packet is on the emitter side, at its peak in the well and at the end
    k_well = int(np.argmax(result["volumes"]["well"]["data"]["particles"]))
    for k, ls in ((0, ":"), (k_well, "--"), (len(t) - 1, "-")):
        dens.plot(x, rho[k], color="0.45", ls=ls, lw=1.0, label=f"n(x), t = {t[k]:g} {t_unit}")
    dens.set_ylabel(f"density [{n_unit}]")
    h1, l1 = land.get_legend_handles_labels()
    h2, l2 = dens.get_legend_handles_labels()
    land.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower left", framealpha=0.9)
    land.set_title("double barrier in the bias drop, density, volumes", fontsize=10)

    for ax, name in zip(axes[1:], VOLUMES):
        win = result["volumes"][name]["window"]
        for key, label, c in TERMS:
            ax.plot(win["t_start"], win[key], color=c, lw=2.2 if key == "power" else 1.4, label=label)
        ax.axhline(0.0, color="0.7", lw=0.8)
        a = result["volumes"][name]["attrs"]
        ax.set_title(f"'{name}' [{a['x_min']:g}, {a['x_max']:g}] {x_unit}; "
                     f"windows of {window:g} {t_unit}", fontsize=9)
        ax.set_xlabel(f"time (window start) [{t_unit}]")
        ax.set_ylabel(f"window-averaged power [{p_unit}]")
    axes[1].legend(fontsize=8, loc="upper left")

    title = str(result["attrs"].get("config", ""))
    title = next((ln.split("=", 1)[1].strip().strip('"') for ln in title.splitlines()
                  if ln.startswith("title")), "resonant-tunnelling diode")
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    out = Path(output) if output is not None else Path(path).with_suffix(".png")
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="result file of `bohmpower exact run.toml`")
    parser.add_argument("-o", "--output", type=Path, default=None, help="PNG (default: beside the result)")
    args = parser.parse_args(argv)
    print(f"figure: {plot(args.result, args.output)}")


if __name__ == "__main__":
    main()
