"""Benchmark of the conditional-wavefunction propagator (issue "CW engine", item 1).

Usage::

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python scripts/bench_cw.py [--quick] [--cold]

Prints, for M = 1024 and N = 1, 10, 100 with and without exchange (C = N or N^2 CWs per world):
sample-steps per second (one core), time per electron-step and per CW-step, the ratio per CW-step to
the FFT floor (SPEC.md "Benchmarks": the same transforms, same shape and batch, same library, in place,
one thread, minimum of >= 5 runs; both libraries' floors are printed), and the ratio of a plain numpy
implementation of the same algorithm (``numpy_step``: batched FFTs over the electrons, a Python loop
over electrons for the interaction sums) to the propagator. Also the accuracy and cost of the point
derivative stencil against the exact trigonometric interpolant. ``--cold`` compiles into an empty
numba cache (compile time); otherwise the first call only loads the cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
if "--cold" in sys.argv:
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_cw_numba_")

import numpy as np
import scipy.fft as sfft
from numba import njit

from bohmpower.cw import _kernels as K
from bohmpower.cw.propagator import ConditionalPropagator, owner_layout
from bohmpower.model.interaction import Interaction

M = 1024
X_MIN, X_MAX = -300.0, 300.0
DT = 0.05
INTERACTION = Interaction(kind="soft_coulomb", softening=1.0, eps_r=1.0)
# Worlds per batch for (N, exchange): ~1000-10000 CWs, (B, C, M) complex < 200 MB.
BATCH = {
    (1, False): 512,
    (10, False): 64,
    (100, False): 8,
    (1, True): 512,
    (10, True): 8,
    (100, True): 1,
}


def time_min(fun, reps: int = 5) -> float:
    """Minimum wall time of ``reps`` calls [s]."""
    best = np.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        fun()
        best = min(best, time.perf_counter() - t0)
    return best


def make_case(n: int, exchange: bool, n_worlds: int, seed: int = 0):
    """Propagator, psi (B, C, M), owner (C,), X_mid (B, N) of a benchmark case (soft Coulomb, drive)."""
    rng = np.random.default_rng(seed)
    x = X_MIN + np.arange(M) * (X_MAX - X_MIN) / M
    u0 = 0.25 * np.exp(-(x**2) / 8.0)
    gamma = np.where(np.abs(x) > 280, 0.1 * ((np.abs(x) - 280) / 20) ** 2, 0.0)
    shapes = np.array([-0.05 * np.tanh(x / 20)])
    prop = ConditionalPropagator(x, 1.0, u0, gamma, INTERACTION.w, shapes, [lambda t: 1.0], DT)
    owner = owner_layout(n, exchange)
    psi = np.exp(-((x - rng.uniform(-100, 100, (n_worlds, owner.size, 1))) ** 2) / 50 + 0.8j * x)
    X_mid = rng.uniform(-200, 200, (n_worlds, n))
    return prop, np.ascontiguousarray(psi, dtype=complex), owner, X_mid


# ------------------------------------------------------------------------------------ FFT floors
_AX = np.zeros(1, dtype=np.int64)


@njit(cache=True)
def _rocket_pair_rows(a):
    for r in range(a.shape[0]):
        row = a[r]
        K._c2c(row, row, _AX, True, 1.0, 1)
        K._c2c(row, row, _AX, False, 1.0, 1)


def fft_floor(rows: int) -> dict:
    """FFT floor per row [s]: forward + inverse transform of each row of a (rows, M) array, in place.

    "rocket": DUCC0 through rocket-fft, one row at a time (what the propagator does);
    "scipy": one batched scipy.fft call each way over the whole array (overwrite_x, workers=1).
    """
    a = np.ascontiguousarray(np.exp(1j * np.arange(rows * M).reshape(rows, M) * 0.001))
    _rocket_pair_rows(a)

    def sc():
        sfft.fft(a, axis=-1, overwrite_x=True, workers=1)
        sfft.ifft(a, axis=-1, overwrite_x=True, workers=1)

    reps = 7
    return {
        "rocket": time_min(lambda: _rocket_pair_rows(a), reps) / rows,
        "scipy": time_min(sc, reps) / rows,
    }


# ------------------------------------------------------------------------------------ plain numpy
def numpy_step(prop: ConditionalPropagator, psi, t, owner, X_mid):
    """The same Strang step as a careful numpy user writes it (returns the new psi).

    Batched scipy.fft over all CWs, the interaction sums by a Python loop over electrons (each term a
    (B, M) array), owner potentials as Wsum - W_own, removed worlds masked.
    """
    h = 0.5 * prop.dt
    x = prop.x
    base = prop.u0 + prop.drive_potential(t + h)
    n = X_mid.shape[1]
    alive = ~np.isnan(X_mid).any(axis=1)
    xm = X_mid[alive]
    rows = np.empty((xm.shape[0], n, x.size))
    for j in range(n):
        rows[:, j] = prop.w(x[None, :] - xm[:, j, None])
    wsum = rows.sum(axis=1, keepdims=True)
    ph = np.exp(-1j * h * (base + wsum - rows) - h * prop.gamma)[:, owner]
    work = psi[alive] * ph
    work = sfft.fft(work, axis=-1, overwrite_x=True, workers=1)
    work *= prop._kin
    work = sfft.ifft(work, axis=-1, overwrite_x=True, workers=1, norm="forward")
    work *= ph
    psi[alive] = work
    return psi


# ------------------------------------------------------------------------------------ propagator
def bench_propagator(n: int, exchange: bool, n_worlds: int | None = None, reps: int = 5) -> dict:
    """Timings of one propagator step for a case; all times in seconds."""
    b = BATCH[(n, exchange)] if n_worlds is None else n_worlds
    prop, psi, owner, X_mid = make_case(n, exchange, b)
    c = owner.size
    t0 = time.perf_counter()
    prop.step(psi, 0.0, owner, X_mid)
    first = time.perf_counter() - t0
    out = {"N": n, "exchange": exchange, "B": b, "C": c, "first_call": first}
    for backend in ("rocket", "scipy"):
        prop.fft_backend = backend
        prop.step(psi, 0.0, owner, X_mid)
        out[backend] = time_min(lambda: prop.step(psi, 0.0, owner, X_mid), reps)
    prop.fft_backend = "rocket"
    small = min(b, max(1, 2000 // c))  # numpy's temporaries: keep them moderate
    p2 = psi[:small].copy()
    numpy_step(prop, p2, 0.0, owner, X_mid[:small])
    out["numpy"] = time_min(lambda: numpy_step(prop, p2, 0.0, owner, X_mid[:small]), 3) * b / small
    out["floor"] = fft_floor(min(b * c, 20000))
    return out


def bench_stencil() -> list[tuple]:
    """(k0 dx, n_stencil, max relative error of v, of d2/psi, ns per point) against trig interpolation."""
    x = X_MIN + np.arange(M) * (X_MAX - X_MIN) / M
    dx = x[1] - x[0]
    rng = np.random.default_rng(1)
    rows = []
    for kdx in (0.1, 0.3, 0.5, 1.0):
        k0 = kdx / dx
        psi = np.exp(-(x**2) / (4 * 36.0) + 1j * k0 * x)[None, None, :].astype(complex)
        pts = rng.uniform(-12, 12, (1, 1, 400))
        ref = [np.empty((1, 1, 400), complex) for _ in range(3)]
        K.trig_eval_np(psi, pts, x[0], dx, *ref)
        for n_p in (8, 10, 12, 16):
            out = [np.empty((1, 1, 400), complex) for _ in range(3)]
            K.stencil_eval_nb(psi, pts, x[0], dx, n_p, *out)
            e1 = np.max(np.abs(out[1] / out[0] - ref[1] / ref[0])) / k0
            e2 = np.max(np.abs(out[2] / out[0] - ref[2] / ref[0])) / k0**2
            big = np.repeat(psi, 2000, axis=1)
            pb = rng.uniform(-150, 150, (1, 2000, 1))
            o = [np.empty((1, 2000, 1), complex) for _ in range(3)]
            K.stencil_eval_nb(big, pb, x[0], dx, n_p, *o)
            tp = time_min(lambda: K.stencil_eval_nb(big, pb, x[0], dx, n_p, *o)) / 2000  # noqa: B023
            rows.append((kdx, n_p, e1, e2, tp * 1e9))
    return rows


# ====================================================================================================
# ENGINE TIMING: the cost of the CWs' spectral-edge (resolution) check in a full engine step
# ====================================================================================================


def bench_spectral_check(n_worlds: int = 64, n_steps: int = 50, reps: int = 7,
                         points: int | None = None) -> dict:
    """Seconds per ``CWEnsemble.step`` of the built-in run demo (N = 2, absorbing layers, drive,
    soft Coulomb) with the spectral-edge check off, every ``DEFAULT_SPECTRAL_EVERY`` steps (the
    default) and at every step; minimum over ``reps`` runs of ``n_steps`` steps each, in CPU seconds
    (one thread: wall time on a shared machine also counts the other users)."""
    from dataclasses import replace

    from bohmpower.config import load_config
    from bohmpower.cw.engine import DEFAULT_SPECTRAL_EVERY, CWEnsemble
    from bohmpower.model import build_model
    from bohmpower.model.sampling import sample_configurations

    config = load_config(Path(__file__).resolve().parent.parent / "bohmpower/demo/run_demo.toml")
    if points is not None:
        config = replace(config, grid=replace(config.grid, points=points))
    model, _ = build_model(config, command="run")
    X0 = sample_configurations("slater", model.orbitals, model.grid.x, 1, np.arange(n_worlds))
    out = {"B": n_worlds, "n_x": model.grid.n_x, "every": DEFAULT_SPECTRAL_EVERY}
    modes = (("off", 0), ("default", DEFAULT_SPECTRAL_EVERY), ("every step", 1))
    best = dict.fromkeys(dict(modes), np.inf)
    for _ in range(reps):  # the modes interleaved, so a busy spell of the machine hits them alike
        for label, every in modes:
            ens = CWEnsemble(model, X0, exchange=False, spectral_every=every)
            ens.step()  # compile / warm caches
            t0 = time.process_time()  # CPU time: one thread, and the machine is shared
            for _ in range(n_steps):
                ens.step()
            best[label] = min(best[label], (time.process_time() - t0) / n_steps)
    out.update(best)
    # the check on its own (one call over the block's CWs), for a noise-free estimate of its share
    from bohmpower.cw.engine import spectral_edge_weights, top_wavenumbers

    top = top_wavenumbers(model.grid.n_x)
    psi = ens.psi.copy()
    out["check"] = time_min(lambda: spectral_edge_weights(psi, top), 20)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip N = 100")
    ap.add_argument("--cold", action="store_true", help="compile into an empty numba cache")
    ap.add_argument("--health-only", action="store_true",
                    help="only the cost of the CWs' spectral-edge check in a full engine step")
    args = ap.parse_args(argv)
    if args.health_only:
        print_spectral_check()
        return
    ns = (1, 10) if args.quick else (1, 10, 100)
    print(f"M = {M}, one thread; times per step of a batch of B worlds with C CWs each")
    hdr = (
        f"{'N':>4} {'exch':>5} {'B':>4} {'C':>6} | {'samp-steps/s':>12} {'us/e-step':>9} {'us/CW':>7} "
        f"| {'floor rk':>8} {'ratio':>5} {'floor sc':>8} | {'scipy path':>10} {'numpy/us':>8} | first call"
    )
    print(hdr)
    for exchange in (False, True):
        for n in ns:
            r = bench_propagator(n, exchange)
            b, c = r["B"], r["C"]
            per_cw = r["rocket"] / (b * c)
            print(
                f"{n:>4} {exchange!s:>5} {b:>4} {c:>6} | {b / r['rocket']:>12.1f} "
                f"{r['rocket'] / (b * n) * 1e6:>9.2f} {per_cw * 1e6:>7.2f} "
                f"| {r['floor']['rocket'] * 1e6:>8.2f} {per_cw / r['floor']['rocket']:>5.2f} "
                f"{r['floor']['scipy'] * 1e6:>8.2f} | {r['scipy'] / (b * c) * 1e6:>8.2f}us "
                f"{r['numpy'] / r['rocket']:>7.1f}x | {r['first_call']:.2f} s",
                flush=True,
            )
    print(
        "\nderivative stencil vs exact trigonometric interpolation (max relative errors, cost per point)"
    )
    for kdx, n_p, e1, e2, tp in bench_stencil():
        print(
            f"  k0 dx = {kdx:4.1f}  n_stencil = {n_p:2d}: v {e1:.1e}  psi''/psi {e2:.1e}  {tp:6.0f} ns"
        )
    print_spectral_check()


def print_spectral_check() -> None:
    print("\nspectral-edge check of the CWs in a full CWEnsemble.step (run demo, N = 2, B = 64)")
    for points in (None, 1024):
        r = bench_spectral_check(points=points)
        print(f"  n_x = {r['n_x']:5d}: {r['off'] * 1e3:7.3f} ms/step without the check; "
              f"every {r['every']} steps x{r['default'] / r['off']:.3f}; "
              f"every step x{r['every step'] / r['off']:.3f}; the check alone "
              f"{r['check'] * 1e3:.3f} ms, i.e. x{1 + r['check'] / (r['every'] * r['off']):.3f} "
              f"every {r['every']} steps", flush=True)


if __name__ == "__main__":
    main()
