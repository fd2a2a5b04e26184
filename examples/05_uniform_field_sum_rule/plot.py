"""Figure of example 05: the global sum rule P = F N d<X_cm>/dt and the finite-volume split.

Usage::

    python examples/05_uniform_field_sum_rule/plot.py out.h5 [--volume device] [-o fig.png]

Top panel: the global power P(t) stored by the run, next to F * integral of J dx built from the stored
particle current (= F N d<X_cm>/dt, docs/theory.md identity 9) and, as a second, independent route,
F times the frame-difference derivative of the first moment integral of x n dx. Bottom panel: the
window-averaged power of one finite volume and its terms (field work, interaction, quantum,
boundary flux, absorbed).

Notes
-----
The force on an electron is q E(x, t) = -E(x) f(t) with E(x) = /model/field_shape and
f(t) = /model/time_profile (q = -e; in device units E is in V/nm and the force in eV/nm has the same
magnitude), so the field's power over all space is

    P = integral q E(x, t) J(x, t) dx = F integral J dx = F N d<X_cm>/dt

for a uniform field (the particle current integrates to the rate of change of the first moment while
the absorbing layers take nothing out).
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bohmpower.io import read_result  # noqa: E402

#: window terms drawn in the bottom panel: (dataset name, label, sign in the balance)
TERMS = (
    ("field_work", "field work $P_J$", 1.0),
    ("interaction", "interaction $P_C$", 1.0),
    ("quantum", "quantum $P_S + P_N$", 1.0),
    ("boundary_flux", "boundary flux $P_B$", 1.0),
    ("absorbed", "absorbed $-A_\\Omega$", -1.0),
)


def field_force(path: Path) -> np.ndarray:
    """Force q E(x, t) on one electron at the stored frames, shape (n_t, n_x), in the file's units."""
    with h5py.File(path, "r") as f:
        shape = f["model/field_shape"][()]  # (n_f, n_x), E(x)/f(t)
        profile = f["model/time_profile"][()]  # (n_f, n_t)
    # q = -e: the force is -E; drives add up
    return -np.einsum("ft,fx->tx", profile, shape)


def sum_rule(result: dict, path: Path) -> dict:
    """The global power and the two routes to F N d<X_cm>/dt.

    Returns a dict with ``power`` (stored, (n_t,)), ``from_current`` (integral of q E J dx, (n_t,)),
    ``from_moment`` (q E times the central difference of integral x n dx at interior frames,
    (n_t - 2,)) and ``t_moment`` (their times).
    """
    x = result["x"]
    dx = x[1] - x[0]
    t = result["time"]
    force = field_force(path)
    current = result["fields"]["current"]
    density = result["fields"]["density"]
    from_current = np.sum(force * current, axis=1) * dx
    moment = np.sum(density * x, axis=1) * dx  # N <X_cm>
    # the force is uniform in x, so one column gives F(t)
    velocity = (moment[2:] - moment[:-2]) / (t[2:] - t[:-2])
    return {
        "power": result["global"]["power"],
        "from_current": from_current,
        "from_moment": force[1:-1, 0] * velocity,
        "t_moment": t[1:-1],
    }


def plot(path: Path, volume: str = "device", output: Path | None = None) -> Path:
    """Draw the figure; return the PNG's path (beside the result unless ``output`` is given)."""
    result = read_result(path, fields=True)
    if volume not in result["volumes"]:
        raise SystemExit(f"no volume {volume!r} in {path}; have {sorted(result['volumes'])}")
    rule = sum_rule(result, path)
    t_unit = result["units"]["time"]
    p_unit = result["global_units"]["power"]
    vol = result["volumes"][volume]
    win = vol["window"]
    attrs = vol["attrs"]

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    top.plot(result["time"], rule["power"], color="k", lw=2.5, label="global power $P$ (stored)")
    top.plot(result["time"], rule["from_current"], color="tab:orange", lw=1.2, ls="--",
             label=r"$F\int J\,dx = F N\, d\langle X_{cm}\rangle/dt$ (stored current)")
    top.plot(rule["t_moment"], rule["from_moment"], "o", ms=3.5, color="tab:blue",
             label=r"$F\, d/dt \int x\, n\, dx$ (frame differences)")
    rel = np.max(np.abs(rule["power"] - rule["from_current"])) / np.max(np.abs(rule["power"]))
    top.set_title(f"all space: only the field's work survives  (max relative difference {rel:.1e})",
                  fontsize=10)
    top.set_ylabel(f"power [{p_unit}]")
    top.axhline(0.0, color="0.7", lw=0.8)
    top.legend(fontsize=8, loc="best")

    t_win = win["t_start"]
    bottom.plot(t_win, win["power"], color="k", lw=2.5, label=r"$P_\Omega = dE_\Omega/dt$")
    for name, label, sign in TERMS:
        bottom.plot(t_win, sign * win[name], lw=1.4, label=label)
    bottom.axhline(0.0, color="0.7", lw=0.8)
    edges = f"[{attrs['x_min']:g}, {attrs['x_max']:g}] {result['units']['x']}"
    smooth = f", smoothing {attrs['smoothing']:g}" if attrs.get("smoothing", 0.0) else ", sharp"
    window = result["attrs"].get("window", np.nan)
    bottom.set_title(f"volume '{volume}' {edges}{smooth}: averages over windows of {window:g} {t_unit}",
                     fontsize=10)
    bottom.set_xlabel(f"time (window start) [{t_unit}]")
    bottom.set_ylabel(f"window-averaged power [{p_unit}]")
    bottom.legend(fontsize=8, loc="best", ncol=2)

    title = tomllib.loads(str(result["attrs"].get("config", ""))).get("title", "")
    fig.suptitle(title or "uniform field: P = F N d<X_cm>/dt", fontsize=11)
    fig.tight_layout()
    out = Path(output) if output is not None else Path(path).with_suffix(".png")
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="result file of `bohmpower exact run.toml`")
    parser.add_argument("--volume", default="device", help="finite volume of the bottom panel")
    parser.add_argument("-o", "--output", type=Path, default=None, help="PNG (default: beside the result)")
    args = parser.parse_args(argv)
    out = plot(args.result, args.volume, args.output)
    print(f"figure: {out}")


if __name__ == "__main__":
    main()
