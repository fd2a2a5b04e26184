"""Shot noise of the injected ensemble: the Fano factor of the transmitted counts against theory.

    NUMBA_NUM_THREADS=1 python scripts/shot_noise_check.py [--worlds 512] [--biases 0.06 0.02]

The device is a single smooth barrier (height 0.045 hartree, width 6 bohr) in the flat left lead,
followed by a linear drop from -4 to 26 bohr (atomic units, m = 1, 128 points on [-130, 130], 0 K,
E_F = 0.05 hartree, five energy cells on (0.01, 0.05] hartree, packets of 12 bohr). For every bias
it prints the counted attempt periods, the mean transmitted count per period and world against the
injection model's, and the Fano factor (jackknife error over the worlds) beside the model's
expectation (independent Bernoulli fates of the packets) and the two-terminal formula of
non-interacting fermions (docs/devices.md, "Shot noise"). At a bias above E_F only the left
reservoir feeds the transmitted energies and the three should agree; below it the model, without
exchange, adds the partition noise of both reservoirs.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bohmpower.config import parse_config  # noqa: E402
from bohmpower.devices.engine import OpenSolver  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from landauer_check import CASE  # noqa: E402

#: The shot-noise device (tests/test_devices_noise.py runs it with fewer worlds): the single barrier
#: of scripts/landauer_check.py on 128 points, moved into the flat left lead in front of the drop.
NOISE_RUN = copy.deepcopy(CASE)
NOISE_RUN["title"] = "shot noise of a single barrier"
NOISE_RUN["particles"]["count"] = 100
NOISE_RUN["grid"]["points"] = 128
NOISE_RUN["time"].update(t_end=5000.0, save_every=25)
NOISE_RUN["potential"][0].update(center=-12.0, height=0.045)
NOISE_RUN["field"][0].update(bias=0.06, x_left=-4.0, x_right=26.0)
NOISE_RUN["trajectories"].update(count=128, seed=7)
NOISE_RUN["reservoirs"].update(energy_cells=5, energy_min=0.01)
NOISE_RUN["steady_state"].update(warm_up=2500.0, batches=3)


def noise_config(bias: float, worlds: int, seed: int = 7):
    d = copy.deepcopy(NOISE_RUN)
    d["field"][0]["bias"] = float(bias)
    d["trajectories"]["count"] = int(worlds)
    d["trajectories"]["seed"] = int(seed)
    return parse_config(d, REPO)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", type=int, default=512)
    ap.add_argument("--biases", type=float, nargs="*", default=[0.06, 0.02])
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print("| bias | periods x worlds | <N> (model) | undecided | F | F model | F quantum | "
          "z (model) | z (quantum) | cpu [s] |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for bias in args.biases:
        t = time.process_time()
        r = OpenSolver(noise_config(bias, args.worlds, args.seed)).run()
        n = r.noise()
        z_q = (n["fano"] - n["fano_quantum"]) / n["fano_stderr"]
        print(f"| {bias:g} | {n['periods']} x {args.worlds} | {n['mean_count']:.4f} "
              f"({n['mean_count_model']:.4f}) | {n['undecided']} | {n['fano']:.4f}({n['fano_stderr']:.4f}) "
              f"| {n['fano_model']:.4f} | {n['fano_quantum']:.4f} | {n['z']:+.2f} | {z_q:+.2f} | "
              f"{time.process_time() - t:.0f} |", flush=True)


if __name__ == "__main__":
    main()
