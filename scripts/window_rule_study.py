"""Window-average rules on step times, offline: how far apart can the full evaluations be? (a study)

The exact run integrates each window average of the grid terms from full evaluations at nodes every
``stride`` steps (``exact.quadrature``: composite closed Newton-Cotes panels of 4-7 intervals). This
script records every volume term at EVERY step of two runs and integrates the windows offline with

- ``NC``: the package's rule (``window_rule(W, "newton_cotes", stride)``), window by window;
- ``CT-m``: the trapezoid rule on a global node grid (stride dividing W) corrected at each window end by
  the Euler-Maclaurin terms B_2j/(2j)! h^2j f^(2j-1), j = 1..m, the odd derivatives from a (2m+1)-node
  stencil centred on the end (nodes of the neighbouring windows), shifted inside [0, t_end] at the
  run's two ends (one-sided there);

against the reference: Gregory's rule of order 10 on every step. Errors are the largest over windows
of |rule - reference| / max_t |term|, in three groups: the terms bilinear in Psi (field work,
interaction, absorbed, particle flux; the sharp volume's P_S, P_B excluded), the smooth volume's P_S
and P_B (ratios by rho, integrated on the full nodes), the sharp volume's P_S and P_B (edge terms).
Phases are stride x the resolution rule's phase per step.

Cases: ``driven`` (the two-electron test case of tests/test_window_quadrature.py, 128^2, dt 0.02,
t_end 2.4: beyond that its packets reach the periodic seam's unresolved return field) and
``collision`` (the whole-command benchmark's barrier collision, 256^2, order 2, dt 0.02, 1200 steps).

Usage: ``python scripts/window_rule_study.py [driven] [collision]`` (about a minute).
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bohmpower.exact.quadrature import window_rule  # noqa: E402

TERMS = ("field_work", "interaction", "quantum_flux", "boundary_flux", "absorbed", "particle_flux")
EDGE = ("quantum_flux", "boundary_flux")
#: Gregory coefficients |G_(k+1)|, k = 1..9 (the end corrections of the trapezoid rule).
GREGORY = (1 / 12, 1 / 24, 19 / 720, 3 / 160, 863 / 60480, 275 / 24192, 33953 / 3628800,
           8183 / 1036800, 3250433 / 479001600)
BERNOULLI = (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730)  # B_2, B_4, ..., B_12


def gregory_weights(n: int, p: int) -> np.ndarray:
    """Weights over nodes 0..n (spacing 1) of int_0^n: trapezoid plus Gregory's end corrections with
    differences up to order p - 1 (exact for degree < p + 1 when n >= 2p - 1)."""
    w = np.ones(n + 1)
    w[0] = w[-1] = 0.5
    for k in range(1, p):
        for i in range(k + 1):
            c = math.comb(k, i)
            w[i] -= GREGORY[k - 1] * (-1) ** i * c  # the forward differences at the left end
            w[n - i] -= GREGORY[k - 1] * (-1) ** i * c  # the backward differences at the right end
    return w


def corrected_trapezoid_weights(n_nodes: int, a: int, b: int, m: int) -> np.ndarray:
    """Weights over the global nodes 0..n_nodes-1 (spacing 1) of the integral from node a to node b:
    the trapezoid rule minus the Euler-Maclaurin terms at both ends, odd derivatives from (2m+1)-node
    stencils centred on the end where the run allows, else shifted inside (one-sided)."""
    w = np.zeros(n_nodes)
    w[a:b + 1] = 1.0
    w[a] -= 0.5
    w[b] -= 0.5
    for end, sign in ((b, -1.0), (a, 1.0)):
        lo = min(max(end - m, 0), n_nodes - 1 - 2 * m)
        x = np.arange(lo, lo + 2 * m + 1, dtype=float) - end
        vander = np.vander(x, increasing=True).T
        for j in range(1, m + 1):
            rhs = np.zeros(2 * m + 1)
            rhs[2 * j - 1] = math.factorial(2 * j - 1)
            d = np.linalg.solve(vander, rhs)  # the (2j-1)-th derivative at the end
            w[lo:lo + 2 * m + 1] += sign * BERNOULLI[j - 1] / math.factorial(2 * j) * d
    return w


def record(case: str) -> tuple[dict, float]:
    """Every volume term at every step of the case: {(volume, term): (n_steps + 1,)}, phase/step."""
    from bohmpower.config import load_config
    from bohmpower.driver import ExactSolver
    from bohmpower.exact import observables as ob

    if case == "driven":
        from tests.test_exact_physics import _driven_case

        cfg = _driven_case(2, 128, dt=0.02, t_end=2.4, save_every=40)
    else:
        import bench_exact

        with tempfile.TemporaryDirectory() as d:
            cfg = load_config(bench_exact._write_command_case(Path(d), 256, 2, 0.02, 1200, 20))
    solver = ExactSolver(cfg)
    setup = ob.FrameSetup(solver.model, workers=1)
    series: dict = {}
    for _, t, psi in solver.steps():
        fr = ob.frame(psi, solver.model, t, diagnostics=False, setup=setup)
        for name, vol in fr.volumes.items():
            for q in TERMS:
                series.setdefault((name, q), []).append(vol[q])
    return {k: np.array(v) for k, v in series.items()}, float(solver._phase_per_step)


def study(case: str, series: dict, phase: float, w_steps: int, m_values=(3, 4, 5)) -> None:
    n_steps = len(next(iter(series.values()))) - 1
    n_win = n_steps // w_steps
    ref_w = gregory_weights(w_steps, 10) / w_steps

    def errors(average) -> tuple[float, float, float]:
        worst: dict = {}
        for key, f in series.items():
            scale = np.abs(f).max() or 1.0
            e = [abs(average(f, i) - ref_w @ f[i * w_steps:(i + 1) * w_steps + 1]) / scale
                 for i in range(n_win)]
            worst[key] = max(e)
        bil = max(v for (n, q), v in worst.items() if q not in EDGE)
        smooth = max(v for (n, q), v in worst.items() if q in EDGE and n != "sharp")
        sharp = max(v for (n, q), v in worst.items() if q in EDGE and n == "sharp")
        return bil, smooth, sharp

    print(f"\n{case}: window {w_steps} steps, {n_win} windows, {phase:.3f} rad per step; errors "
          "bilinear / smooth P_S,P_B / sharp P_S,P_B")
    for stride in [s for s in range(1, w_steps // 2 + 1) if w_steps % s == 0]:
        n_per = w_steps // stride
        cols = []
        rule = window_rule(w_steps, "newton_cotes", stride)
        cols.append(("NC", errors(lambda f, i: rule.average(f[i * w_steps + rule.steps]))))
        for m in m_values:
            g_nodes = n_win * n_per + 1
            if g_nodes < 2 * m + 1:
                continue
            wts = [corrected_trapezoid_weights(g_nodes, i * n_per, (i + 1) * n_per, m) / n_per
                   for i in range(n_win)]
            cols.append((f"CT-{m}", errors(
                lambda f, i, wts=wts, s=stride: wts[i] @ f[:n_win * w_steps + 1:s])))
        line = "  ".join(f"{name} {a:.0e}/{b:.0e}/{c:.0e}" for name, (a, b, c) in cols)
        print(f"  stride {stride:3d} ({stride * phase:.2f} rad): {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cases = [a for a in argv if a in ("driven", "collision")] or ["driven", "collision"]
    for case in cases:
        series, phase = record(case)
        for w_steps in ((40, 20) if case == "driven" else (20, 60)):
            study(case, series, phase, w_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
