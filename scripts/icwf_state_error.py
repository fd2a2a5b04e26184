"""Where the interacting scheme's error comes from: the reconstructed Psi itself, against the exact Psi.

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 python scripts/icwf_state_error.py n2_strong 32 64

Runs the exact solver and the interacting scheme's basis (``cw.interacting.InteractingEnsemble``,
the accuracy study's seed) side by side on a case of ``scripts/icwf_convergence.py`` and prints, once
per unit of time, for each basis size M: the state error ||Psi_r - Psi|| on the full grid, the energy
<H> of the reconstructed Psi (from the basis matrices) against the exact solver's, and the rank of
the overlap matrix S. No trajectories: these are the numbers every estimator inherits, free of Monte
Carlo noise. ``--json PATH`` writes them too.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np

from bohmpower.config import parse_config
from bohmpower.cw.interacting import InteractingEnsemble
from bohmpower.driver import ExactSolver
from bohmpower.exact.observables import FrameSetup, frame
from bohmpower.model import build_model

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("icwf_convergence",
                                               REPO / "scripts" / "icwf_convergence.py")
conv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conv)


def state_errors(case: str, m: int) -> list[dict]:
    _, runs = conv.run_files(case, 8, [m])
    cfg = parse_config(runs[f"icwf_{m}"], Path.cwd())
    model = build_model(cfg, command="run")[0]
    exact = ExactSolver(dataclasses.replace(cfg, method=None, trajectories=None))
    setup = FrameSetup(exact.model, 1)
    psi = exact.psi
    ens = InteractingEnsemble(model, np.zeros((0, model.n_particles)), m, seed=conv.acc.SEED,
                              overlap_cutoff=cfg.method.overlap_cutoff, norm_tolerance=1.0)
    every = int(round(1.0 / cfg.time.dt))
    vol = model.grid.dx ** model.n_particles
    rows, t = [], 0.0
    for step in range(cfg.time.n_steps + 1):
        if step % every == 0:
            err = float(np.sqrt(np.sum(np.abs(ens.wavefunction_on_grid() - psi) ** 2) * vol))
            fe = frame(psi, exact.model, t, diagnostics=False, setup=setup)
            rows.append({"t": t, "state_error": err, "energy_exact": fe.globals["energy"]
                         / fe.globals["norm"], "energy": ens.energy, "rank": ens.rank})
            r = rows[-1]
            print(f"M={m:4d} t={t:5.1f}  ||Psi_r - Psi|| = {err:.3f}   <H> {r['energy']:.4f} "
                  f"(exact {r['energy_exact']:.4f})   rank S {ens.rank}", flush=True)
        if step == cfg.time.n_steps:
            break
        ens.step()
        exact.propagator.advance(psi, t, 1)
        t = (step + 1) * cfg.time.dt
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=conv.CASES)
    ap.add_argument("sizes", nargs="+", type=int)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out = {m: state_errors(args.case, m) for m in args.sizes}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
