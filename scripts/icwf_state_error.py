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


def projection_error(ens, psi: np.ndarray, dx: float) -> float:
    """||Psi - P Psi||: the distance of the exact Psi from the span of the basis functions (N = 2),
    the best any coefficients C could do with this basis; NaN for other N."""
    phi = ens.basis.psi[ens.live]
    if phi.shape[1] != 2:
        return float("nan")
    ov = np.einsum("aix,bjx->abij", phi.conj(), phi) * dx
    sign = -1.0 if ens.antisymmetric else 0.0
    # <Phi_a|Phi_b>: 2 det O for the antisymmetrised pair (two terms each side), prod O_ll otherwise
    s = (1.0 - sign) * (ov[..., 0, 0] * ov[..., 1, 1] + sign * ov[..., 0, 1] * ov[..., 1, 0])
    # <Phi_a|Psi> with Phi_a = phi_1(x) phi_2(y) (+ sign phi_2(x) phi_1(y))
    t1 = np.einsum("ax,xy,ay->a", phi[:, 0].conj(), psi, phi[:, 1].conj(), optimize=True)
    t2 = np.einsum("ax,xy,ay->a", phi[:, 1].conj(), psi, phi[:, 0].conj(), optimize=True)
    beta = (t1 + sign * t2) * dx * dx
    lam, vec = np.linalg.eigh(0.5 * (s + s.conj().T))
    keep = lam > 1e-13 * lam[-1]
    proj = np.sum(np.abs(vec[:, keep].conj().T @ beta) ** 2 / lam[keep])
    norm2 = float(np.sum(np.abs(psi) ** 2) * dx * dx)
    return float(np.sqrt(max(norm2 - proj, 0.0)))


def state_errors(case: str, m: int, guidance: str = "conditional", dt_factor: float = 1.0
                 ) -> list[dict]:
    _, runs = conv.run_files(case, 8, [m])
    if dt_factor != 1.0:
        tm = runs[f"icwf_{m}"]["time"]
        tm["save_every"] = int(round(tm["save_every"] * dt_factor))
        tm["dt"] = tm["dt"] / dt_factor
    cfg = parse_config(runs[f"icwf_{m}"], Path.cwd())
    model = build_model(cfg, command="run")[0]
    exact = ExactSolver(dataclasses.replace(cfg, method=None, trajectories=None))
    setup = FrameSetup(exact.model, 1)
    psi = exact.psi
    ens = InteractingEnsemble(model, np.zeros((0, model.n_particles)), m, seed=conv.acc.SEED,
                              overlap_cutoff=cfg.method.overlap_cutoff, norm_tolerance=1.0,
                              basis_guidance=guidance)
    every = int(round(1.0 / cfg.time.dt))
    vol = model.grid.dx ** model.n_particles
    rows, t = [], 0.0
    for step in range(cfg.time.n_steps + 1):
        if step % every == 0:
            err = float(np.sqrt(np.sum(np.abs(ens.wavefunction_on_grid() - psi) ** 2) * vol))
            fe = frame(psi, exact.model, t, diagnostics=False, setup=setup)
            proj = projection_error(ens, psi, model.grid.dx)
            rows.append({"t": t, "state_error": err, "projection_error": proj, "energy_exact": fe.globals["energy"]
                         / fe.globals["norm"], "energy": ens.energy, "rank": ens.rank})
            r = rows[-1]
            print(f"{guidance[:5]} M={m:4d} t={t:5.1f}  ||Psi_r - Psi|| = {err:.3f} (span {proj:.3f})  <H> {r['energy']:.4f} "
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
    ap.add_argument("--dt-factor", type=float, default=1.0, help="divide time.dt by this")
    ap.add_argument("--guidance", choices=("conditional", "reconstructed"), default="conditional",
                    help="what guides the basis worlds (method.basis_guidance)")
    args = ap.parse_args()
    out = {m: state_errors(args.case, m, args.guidance, args.dt_factor) for m in args.sizes}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
