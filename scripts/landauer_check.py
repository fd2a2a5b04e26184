"""The Landauer check of open systems, at scale (docs/devices.md, benchmarks/README.md).

Non-interacting electrons injected from two Fermi reservoirs through a single smooth barrier with a
linear drop across it: the steady-state particle current of the injected ensemble (through both
volume edges, and from the exits) against the Landauer current of transfer matrices on the same
potential, at three biases and two temperatures. tests/test_devices_open.py runs the same case
shrunk (128 points, 8 worlds).

    python scripts/landauer_check.py [--worlds 64] [--points 256]
    python scripts/landauer_check.py --scaling [--relative-permittivity 10 --softening 5]

Prints one line per point and a summary; the cost per injected electron and per unit of simulated
time is the measured process time.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np

from bohmpower.config import parse_config
from bohmpower.devices.engine import OpenSolver

CASE = {
    "schema": "bohmpower-run/1",
    "title": "open single barrier (landauer_check)",
    "particles": {"count": 400},
    "grid": {"x_min": -130.0, "x_max": 130.0, "points": 256, "boundary": "absorbing",
             "absorber_width": 25.0},
    "time": {"dt": 2.0, "t_end": 3400.0, "save_every": 50},
    "potential": [{"kind": "barrier", "center": 0.0, "width": 6.0, "height": 0.04,
                   "smoothing": 1.5}],
    "field": [{"kind": "linear_drop", "bias": 0.02, "x_left": -20.0, "x_right": 20.0}],
    "volume": [{"name": "device", "x_min": -30.0, "x_max": 30.0}],
    "trajectories": {"count": 64, "seed": 2026},
    "reservoirs": {"fermi_energy": 0.05, "temperature": 0.0, "packet_width": 12.0,
                   "energy_cells": 10},
    "steady_state": {"warm_up": 2000.0, "batches": 5},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", type=int, default=64)
    ap.add_argument("--points", type=int, default=256)
    ap.add_argument("--biases", default="0.01,0.02,0.03")
    ap.add_argument("--temperatures", default="0,1000")
    ap.add_argument("--warm-up", type=float, default=2000.0)
    ap.add_argument("--t-end", type=float, default=3400.0)
    ap.add_argument("--relative-permittivity", type=float, default=None,
                    help="with --scaling: also run interacting electrons (soft Coulomb)")
    ap.add_argument("--softening", type=float, default=5.0, help="soft Coulomb softening [bohr]")
    ap.add_argument("--scaling", action="store_true",
                    help="only the cost per electron and step against the pool size "
                         "(worlds 4, 16, 64, 256 at bias 0.02, 0 K)")
    args = ap.parse_args()
    if args.scaling:
        scaling(args)
        return
    print("bias  T[K]   J(-30)          J(+30)          J(exits)        Landauer  model     "
          "z(-30) z(+30) z(exit)  cpu[s]  electrons  us/electron/step")
    z_all = []
    for temperature in map(float, args.temperatures.split(",")):
        for bias in map(float, args.biases.split(",")):
            d = copy.deepcopy(CASE)
            d["field"][0]["bias"] = bias
            d["reservoirs"]["temperature"] = temperature
            d["trajectories"]["count"] = args.worlds
            d["grid"]["points"] = args.points
            d["steady_state"]["warm_up"] = args.warm_up
            d["time"]["t_end"] = args.t_end
            config = parse_config(d, ".")
            solver = OpenSolver(config)
            for w in solver.warnings:
                if not w.startswith(("time.dt", "grid.absorber_width")) or not z_all:
                    print("  warning:", w)
            a = time.process_time()
            r = solver.run()
            cpu = time.process_time() - a
            c = r.current()
            ref = r.landauer
            jl = ref["current"]
            z = (c["mean"] - jl) / c["standard_error"]
            z_e = (c["exit_mean"] - jl) / c["exit_standard_error"]
            z_all += list(z) + [z_e]
            n_el = int(r.injected_total.sum())
            steps = config.time.n_steps
            # mean electrons present per world over the run
            n_mean = float(r.electrons.mean())
            per = cpu / max(1.0, n_mean * args.worlds * steps) * 1e6
            print(f"{bias:.2f}  {temperature:5.0f}  "
                  f"{c['mean'][0]:.5f}({c['standard_error'][0]:.5f})  "
                  f"{c['mean'][1]:.5f}({c['standard_error'][1]:.5f})  "
                  f"{c['exit_mean']:.5f}({c['exit_standard_error']:.5f})  {jl:.5f}  "
                  f"{ref['model_current']:.5f}  {z[0]:+.2f}  {z[1]:+.2f}  {z_e:+.2f}  "
                  f"{cpu:6.1f}  {n_el:6d}  {per:.1f}", flush=True)
            print(f"      batch-means s.e. {c['batch_standard_error']}, N in device at the end "
                  f"{r.electrons[-1].mean():.1f}, largest N {r.max_present}, lost {r.lost}, "
                  f"timings { {k: round(v, 1) for k, v in r.timings.items()} }", flush=True)
    z_all = np.array(z_all)
    print(f"all points: {z_all.size} z-scores, max |z| {np.max(np.abs(z_all)):.2f}, "
          f"sum z^2 {np.sum(z_all**2):.1f} (the three estimators of one run are correlated)")


def scaling(args) -> None:
    """Process time per electron and step, and per world and unit of simulated time, against the
    number of electrons stepped together (a pool holds every electron of a block of worlds)."""

    print("worlds  interaction  mean electrons in the pool  cpu[s]  us/electron/step  "
          "ms/world/fs  ms/injected electron")
    kinds = [None] + ([args.relative_permittivity] if args.relative_permittivity else [])
    for n_w, eps_r in ((n, e) for n in (4, 16, 64, 256) for e in kinds):
        d = copy.deepcopy(CASE)
        d["trajectories"]["count"] = n_w
        d["grid"]["points"] = args.points
        if eps_r is not None:  # side by side with the non-interacting run of the same worlds
            d["interaction"] = {"kind": "soft_coulomb", "softening": args.softening,
                                "relative_permittivity": eps_r}
        config = parse_config(d, ".")
        solver = OpenSolver(config, block_size=n_w)
        a = time.process_time()
        r = solver.run()
        cpu = time.process_time() - a  # the Landauer reference is computed by OpenSolver()
        steps = config.time.n_steps
        pool = float(r.electrons.mean()) * n_w
        fs = config.time.t_end * 0.024188843265857
        label = "none" if eps_r is None else f"eps_r={eps_r:g}"
        print(f"{n_w:6d}  {label:11s}  {pool:26.1f}  {cpu:6.1f}  {cpu / (pool * steps) * 1e6:16.2f}  "
              f"{cpu / n_w / fs * 1e3:11.2f}  {cpu / r.injected_total.sum() * 1e3:20.2f}",
              flush=True)


if __name__ == "__main__":
    main()
