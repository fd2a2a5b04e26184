"""Table of example 07: I(V) and where the steady-state power goes, from a sweep folder.

Usage::

    python examples/07_rtd_open_iv/table.py SWEEP_DIR

One row per bias point: the exit current with its standard error over the worlds, the Landauer
current of the same device and the injection model's expectation (packet-averaged transmission);
the field work P_J over the whole device against I V; each volume's share of P_J and, beside it, its
share of the drop (in steady state the particle current is the same everywhere, so each volume
receives I times the drop across it); the energy current out of the double barrier (P_B) and its
quantum term; the run's wall time, read from the result file. Powers in units of 1e-4 eV/fs, numbers
in brackets the standard errors in the last digits shown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np

from bohmpower.devices.sweep import read_sweep

VOLUMES = ("emitter", "double_barrier", "collector")


def drop_shares(sweep: dict) -> dict:
    """Fraction of the linear drop (the first point's potential) across each volume."""
    first = sorted(Path(sweep["base_dir"]).glob("*.bias*.h5"))[0]
    with h5py.File(first, "r") as f:
        x = f["x"][()]
        u = f["model/drive_potential"][()] if "model/drive_potential" in f else None
    if u is None:
        return {}
    u = np.asarray(u, dtype=float).reshape(-1, x.size)[-1]
    total = u[0] - u[-1]
    return {n: (np.interp(v["x_min"], x, u) - np.interp(v["x_max"], x, u)) / total
            for n, v in sweep["volumes"].items() if n in VOLUMES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    args = ap.parse_args()
    sw = read_sweep(args.sweep_dir)
    v = sw["volumes"]
    dev = v["whole_device"]
    shares = drop_shares(sw)
    print(f"units: bias {sw['units']['bias']}, current {sw['units']['current']}, "
          f"power 1e-4 {sw['units']['power']}")
    if shares:
        print("drop across emitter / double barrier / collector: "
              + " / ".join(f"{100 * shares[n]:.1f} %" for n in VOLUMES))
    print("| bias | I (exits) | Landauer | model | P_J device | I V | P_J share emitter / double "
          "barrier / collector | double barrier: P_B, quantum | wall time [s] |")
    print("|---|---|---|---|---|---|---|---|---|")
    files = sorted(Path(args.sweep_dir).glob("*.bias*.h5"))
    walls = {}
    for path in files:
        with h5py.File(path, "r") as f:
            walls[round(float(f["steady_state"].attrs["bias"]), 9)] = float(f.attrs["wall_time"])
    for i, b in enumerate(sw["bias"]):
        cur, se = sw["exit_current"][i], sw["exit_current_stderr"][i]
        pj = dev["field_work"][i]
        share = " / ".join(f"{100 * v[n]['field_work'][i] / pj:.0f} %" for n in VOLUMES)
        db = v["double_barrier"]
        print(f"| {b:.2f} | {cur:.5f}({se * 1e5:.0f}) | {sw['landauer_current'][i]:.5f} | "
              f"{sw['model_current'][i]:.5f} | {pj * 1e4:.2f}({dev['field_work_stderr'][i] * 1e6:.0f}) "
              f"| {cur * b * 1e4:.2f} | {share} | {db['boundary_flux'][i] * 1e4:+.2f}"
              f"({db['boundary_flux_stderr'][i] * 1e6:.0f}), {db['quantum'][i] * 1e4:+.2f}"
              f"({db['quantum_stderr'][i] * 1e6:.0f}) | {walls.get(round(float(b), 9), float('nan')):.0f} |")


if __name__ == "__main__":
    main()
