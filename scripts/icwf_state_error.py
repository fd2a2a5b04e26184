"""Where the interacting scheme's error comes from: the reconstructed Psi itself, against the exact Psi.

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 python scripts/icwf_state_error.py n2_strong 32 64

Runs the exact solver and the interacting scheme's basis (``cw.interacting.InteractingEnsemble``,
the accuracy study's seed) side by side on a case of ``scripts/icwf_convergence.py`` and prints, once
per unit of time, for each basis size M: the state error ||Psi_r - Psi|| on the full grid, for N = 2
the span errors (the distance of the exact Psi from the span of the M basis functions, the best any
coefficients could do with this basis, and from V x V, V the span of all their CWs: the bound of an
ansatz with every product of the same orbitals), the energy
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
from bohmpower.cw.interacting import InteractingEnsemble, pseudo_inverse
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
    sign = -1.0 if ens.antisymmetric else 0.0
    # <Phi_a|Phi_b> for Phi_a = phi_1(x) phi_2(y) (- phi_2(x) phi_1(y)): the engine's S (det O or
    # prod O_ll) times N! (the two terms on each side)
    s = ens.s * ens.factorial
    t1 = np.einsum("ax,xy,ay->a", phi[:, 0].conj(), psi, phi[:, 1].conj(), optimize=True)
    t2 = np.einsum("ax,xy,ay->a", phi[:, 1].conj(), psi, phi[:, 0].conj(), optimize=True)
    beta = (t1 + sign * t2) * dx * dx  # <Phi_a|Psi>
    proj = float(np.real(np.vdot(beta, pseudo_inverse(s, 1e-13)[0] @ beta)))
    norm2 = float(np.sum(np.abs(psi) ** 2) * dx * dx)
    return float(np.sqrt(max(norm2 - proj, 0.0)))


def tensor_span_error(ens, psi: np.ndarray, dx: float) -> float:
    """||Psi - P Psi|| with P the projection on V (x) V, V the span of every CW of the basis (N = 2):
    the bound of an ansatz with all products of the same orbitals (M^2 coefficients instead of M);
    NaN for other N."""
    phi = ens.basis.psi[ens.live]
    if phi.shape[1] != 2:
        return float("nan")
    u, sv, vh = np.linalg.svd(phi.reshape(-1, phi.shape[-1]), full_matrices=False)
    q = vh[sv > 1e-10 * sv[0]]  # orthonormal rows spanning V (in the plain sum metric)
    a = q.conj() @ psi @ q.conj().T
    norm2 = float(np.sum(np.abs(psi) ** 2))
    return float(np.sqrt(max(norm2 - float(np.sum(np.abs(a) ** 2)), 0.0) * dx * dx))


class OrbitalProducts:
    """A prototype on the grid (N = 2): Psi = sum_pq A_pq phi_p(x_1) phi_q(x_2) over EVERY product
    of the basis worlds' CWs (R = 2 M orbitals, R^2 coefficients), against the ICWF's M products of
    each world's own pair. The orbitals are the same CWs, evolved by the ensemble; the coefficients
    follow the Dirac-Frenkel equation i S dA/dt = K A with S = O (x) O (pseudo-inverse O^+ (x) O^+)
    and, because T, U0 and q phi cancel as in the ICWF, K A = W2(A) - U A O^T - O A U^T,
    U_pr = <phi_p|V_r|phi_r> with V_r the conditional interaction CW r evolves under and
    W2(A)_pq = <phi_p phi_q| W(x_1 - x_2) |Psi_A>. Heun steps with the orbitals at t and t + dt.
    W2 is evaluated on the full grid (n_x^2 R): a measurement of the ansatz, not an engine."""

    def __init__(self, ens, psi0: np.ndarray, cutoff: float = 1e-6) -> None:
        self.ens, self.cutoff = ens, cutoff
        self.dx = float(ens.dx)
        self.w_table = ens.pair.table()
        phi, o, _ = self._orbitals()
        o_plus = self._pinv(o)
        b = phi.conj() @ psi0 @ phi.conj().T * self.dx ** 2
        self.a = o_plus @ b @ o_plus.T

    def _pinv(self, o):
        return pseudo_inverse(o, self.cutoff)[0]

    def _orbitals(self):
        ens = self.ens
        live = ens.live
        phi = ens.basis.psi[live].reshape(-1, ens.basis.psi.shape[-1])  # (R, n_x)
        X = ens.basis.state.X[live]
        x = ens.model.grid.x
        w = ens.potentials.w
        v = np.stack([w(x[None, :] - X[:, 1, None]), w(x[None, :] - X[:, 0, None])], axis=1)
        v = v.reshape(phi.shape)  # CW j of world b feels the other electron of world b
        o = phi.conj() @ phi.T * self.dx
        u = phi.conj() @ (v * phi).T * self.dx
        return phi, o, u

    def _rate(self, a, basis):
        phi, o, u, o_plus = basis
        psi_a = phi.T @ a @ phi
        w2 = phi.conj() @ (self.w_table * psi_a) @ phi.conj().T * self.dx ** 2
        k = w2 - u @ a @ o.T - o @ a @ u.T
        return -1j * (o_plus @ k @ o_plus.T)

    def basis_now(self):
        phi, o, u = self._orbitals()
        return phi, o, u, self._pinv(o)

    def step(self, before, after, dt: float) -> None:
        k1 = self._rate(self.a, before)
        k2 = self._rate(self.a + dt * k1, after)
        self.a = self.a + 0.5 * dt * (k1 + k2)

    def on_grid(self) -> np.ndarray:
        phi = self.ens.basis.psi[self.ens.live].reshape(-1, self.ens.basis.psi.shape[-1])
        return phi.T @ self.a @ phi


def state_errors(case: str, m: int, dt_factor: float = 1.0, products: bool = False,
                 products_cutoff: float = 1e-6) -> list[dict]:
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
                              overlap_cutoff=cfg.method.overlap_cutoff, norm_tolerance=1.0)
    every = int(round(1.0 / cfg.time.dt))
    vol = model.grid.dx ** model.n_particles
    prods = OrbitalProducts(ens, psi, products_cutoff) if products else None
    rows, t = [], 0.0
    for step in range(cfg.time.n_steps + 1):
        if step % every == 0:
            err = float(np.sqrt(np.sum(np.abs(ens.wavefunction_on_grid() - psi) ** 2) * vol))
            fe = frame(psi, exact.model, t, diagnostics=False, setup=setup)
            proj = projection_error(ens, psi, model.grid.dx)
            tens = tensor_span_error(ens, psi, model.grid.dx)
            err_p = (float(np.sqrt(np.sum(np.abs(prods.on_grid() - psi) ** 2) * vol)) if prods
                     else float("nan"))
            rows.append({"t": t, "state_error": err, "projection_error": proj,
                         "tensor_span_error": tens, "orbital_products_error": err_p,
                         "energy_exact": fe.globals["energy"] / fe.globals["norm"],
                         "energy": ens.energy, "rank": ens.rank})
            r = rows[-1]
            print(f"M={m:4d} t={t:5.1f}  ||Psi_r - Psi|| = {err:.3f} (span {proj:.3f}, V x V "
                  f"{tens:.3f}, all products {err_p:.3f})  <H> {r['energy']:.4f} "
                  f"(exact {r['energy_exact']:.4f})   rank S {ens.rank}", flush=True)
        if step == cfg.time.n_steps:
            break
        before = prods.basis_now() if prods else None
        ens.step()
        if prods:
            prods.step(before, prods.basis_now(), cfg.time.dt)
        exact.propagator.advance(psi, t, 1)
        t = (step + 1) * cfg.time.dt
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=conv.CASES)
    ap.add_argument("sizes", nargs="+", type=int)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--products", action="store_true",
                    help="also propagate the all-products prototype (OrbitalProducts, N = 2)")
    ap.add_argument("--products-cutoff", type=float, default=1e-6,
                    help="relative eigenvalue cutoff of O's pseudo-inverse in the prototype")
    ap.add_argument("--dt-factor", type=float, default=1.0, help="divide time.dt by this")
    args = ap.parse_args()
    out = {m: state_errors(args.case, m, args.dt_factor, args.products, args.products_cutoff)
           for m in args.sizes}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
