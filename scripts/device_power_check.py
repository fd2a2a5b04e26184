"""Steady-state local power of the open single barrier, and the field work against I V (docs/devices.md).

The case of scripts/landauer_check.py with three volumes: the left lead [-32, -20], the linear drop
with the barrier [-20, 20] and the right lead [20, 32] bohr (the run adds ``whole_device``, between the
injection regions). Per bias: the steady-state averages of P_Omega, the field work P_J, the quantum
term and the boundary flux P_B per volume with their standard errors over the worlds, and the field
work over the whole device against the current times the bias (exit current and Landauer current).
tests/test_devices_power.py runs the same case shrunk (128 points, 8 worlds).

With ``--relative-permittivity`` the electrons interact (soft Coulomb of ``--softening``), and the
interaction term P_C and the ``absorbed`` term (pair energy taken out by the contacts) are printed too
(docs/devices.md, "Interacting electrons").

    python scripts/device_power_check.py [--worlds 256] [--biases 0.01,0.02,0.03]
    python scripts/device_power_check.py --biases 0.02 --worlds 32 --points 128 --dt 2.8 \
        --energy-cells 8 --warm-up 1750 --t-end 2800 --relative-permittivity 10 --softening 10
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np

from bohmpower.config import parse_config
from bohmpower.devices.engine import DEVICE_VOLUME, OpenSolver

from landauer_check import CASE

VOLUMES = [{"name": "left", "x_min": -32.0, "x_max": -20.0},
           {"name": "drop", "x_min": -20.0, "x_max": 20.0},
           {"name": "right", "x_min": 20.0, "x_max": 32.0}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", type=int, default=256)
    ap.add_argument("--points", type=int, default=256)
    ap.add_argument("--biases", default="0.01,0.02,0.03")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--warm-up", type=float, default=4000.0)
    ap.add_argument("--t-end", type=float, default=5400.0)
    ap.add_argument("--dt", type=float, default=None, help="time step (default: the case's)")
    ap.add_argument("--energy-cells", type=int, default=None)
    ap.add_argument("--relative-permittivity", type=float, default=None,
                    help="interacting electrons: soft Coulomb with this eps_r")
    ap.add_argument("--softening", type=float, default=10.0, help="soft Coulomb softening [bohr]")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--t-on", type=float, default=None,
                    help="switch the bias on over this time (turn_on) and print the transient")
    args = ap.parse_args()
    z_power, z_iv = [], []
    for bias in map(float, args.biases.split(",")):
        d = copy.deepcopy(CASE)
        d["field"][0]["bias"] = bias
        d["reservoirs"]["temperature"] = args.temperature
        d["trajectories"]["count"] = args.worlds
        d["grid"]["points"] = args.points
        d["steady_state"]["warm_up"] = args.warm_up
        d["time"]["t_end"] = args.t_end
        d["volume"] = VOLUMES
        if args.dt is not None:
            d["time"]["dt"] = args.dt
        if args.energy_cells is not None:
            d["reservoirs"]["energy_cells"] = args.energy_cells
        if args.seed is not None:
            d["trajectories"]["seed"] = args.seed
        if args.relative_permittivity is not None:
            d["interaction"] = {"kind": "soft_coulomb", "softening": args.softening,
                                "relative_permittivity": args.relative_permittivity}
        if args.t_on is not None:
            d["field"][0].update(time_profile="turn_on", t_on=args.t_on)
        solver = OpenSolver(parse_config(d, "."))
        for w in solver.warnings:
            if "softening" in w:
                print("  warning:", w)
        a = time.process_time()
        r = solver.run()
        cpu = time.process_time() - a
        sp = r.steady_power()
        c = r.current()
        v = r.landauer["bias"]
        print(f"bias {bias:.3f} hartree, T {args.temperature:.0f} K, {args.worlds} worlds, "
              f"averaging {sp['averaging_time']:.0f} a.u., cpu {cpu:.1f} s")
        print(f"  current: exits {c['exit_mean']:.5f}({c['exit_standard_error']:.5f}), surfaces "
              f"{np.array2string(c['mean'], precision=5)}, Landauer {r.landauer['current']:.5f}")
        print("  volume        E_Omega           P_Omega            P_J                P_C"
              "                quantum            P_B                absorbed           z(P_Omega)")
        for i, name in enumerate(sp["volumes"]):
            def pm(q, i=i):
                return f"{sp[q][i]:+.3e}({sp[q + '_stderr'][i]:.1e})"
            z = sp["power"][i] / sp["power_stderr"][i]
            z_power.append(z)
            print(f"  {name:12s}  {pm('energy')}  {pm('power')}  {pm('field_work')}  "
                  f"{pm('interaction')}  {pm('quantum')}  {pm('boundary_flux')}  {pm('absorbed')}  "
                  f"{z:+.2f}")
        i = sp["volumes"].index(DEVICE_VOLUME)
        pj, pj_se = sp["field_work"][i], sp["field_work_stderr"][i]
        iv, iv_se = c["exit_mean"] * v, c["exit_standard_error"] * v
        z = (pj - iv) / np.hypot(pj_se, iv_se)
        z_iv.append(z)
        print(f"  field work over the device {pj:.4e}({pj_se:.1e}); I V from the exits "
              f"{iv:.4e}({iv_se:.1e}), z = {z:+.2f}; Landauer I V {r.landauer['current'] * v:.4e} "
              f"(z = {(pj - r.landauer['current'] * v) / pj_se:+.2f}); share in the drop "
              f"{sp['field_work'][sp['volumes'].index('drop')] / pj:.3f}", flush=True)
        if args.t_on is not None:
            transient_summary(r, args.t_on)
        print(f"  net particle inflow into the device {sp['particle_flux'][i]:+.2e}"
              f"({sp['particle_flux_stderr'][i]:.1e}) per a.u. time (the transient left)",
              flush=True)
    print(f"max |z| of P_Omega over {len(z_power)} volumes x biases: "
          f"{np.max(np.abs(z_power)):.2f}; field work vs I V: z = "
          f"{', '.join(f'{z:+.2f}' for z in z_iv)}")


def transient_summary(r, t_on: float) -> None:
    """The transient record of a bias switched on (docs/devices.md, "Transients")."""
    tr = r.transient()
    width = tr["t_end"] - tr["t_start"]
    steady = tr["t_start"] >= r.warm_up
    per_world = r.ramo[:, steady].sum(axis=1) / width[steady].sum()
    se = per_world.std(ddof=1) / np.sqrt(per_world.size)
    c = r.current()
    print(f"  Ramo-Shockley current in steady state {per_world.mean():.5f}({se:.5f}) against "
          f"the exits {c['exit_mean']:.5f}({c['exit_standard_error']:.5f})")
    disp = (r.ramo[:, None, steady].sum(axis=2)
            - r.frame_crossings[:, :, steady].sum(axis=2)) / width[steady].sum()
    z = disp.mean(axis=0) / (disp.std(axis=0, ddof=1) / np.sqrt(disp.shape[0]))
    print(f"  displacement current in steady state, z per surface: "
          f"{np.array2string(z, precision=2)}")
    pj = tr["power"]["volumes"][DEVICE_VOLUME]["window/field_work"]
    n = pj.size
    on = tr["t_start"][:n] >= t_on
    iv = tr["bias"][:n] * tr["ramo_current"][:n]
    print(f"  after the switch-on: max |P_J - V I_RS| / max |P_J| = "
          f"{np.max(np.abs(pj[on] - iv[on])) / np.max(np.abs(pj[on])):.2e}")
    sw = tr["t_end"] <= t_on
    dsw = tr["displacement_current"][:, sw]
    print(f"  during the switch-on (t <= {t_on:g}): mean displacement current per surface "
          f"{np.array2string(dsw.mean(axis=1), precision=5)}, particle current "
          f"{np.array2string(tr['current'][:, sw].mean(axis=1), precision=5)}, Ramo "
          f"{tr['ramo_current'][sw].mean():.5f}")


if __name__ == "__main__":
    main()
