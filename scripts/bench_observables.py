"""Benchmark of the exact solver's grid observables (a script, not a test).

Measures, side by side in one run and one process (SPEC.md "Benchmarks: how ratios are measured"):

- the FFT floor: one in-place forward + inverse N-d transform of psi's shape (what a propagation
  step needs), scipy.fft ``fftn``/``ifftn`` with overwrite_x, and pyFFTW in-place FFTW_MEASURE plans when
  pyFFTW is importable; one thread, the minimum of at least 5 runs;
- one propagation step (``SplitOperator.advance(psi, t, 1)``, order 2, the propagator's default FFT
  backend);
- ``observables.frame`` per call with ``diagnostics=False`` (what the run loop calls at every step)
  and ``diagnostics=True`` (stored frames), with the model's ``FrameSetup`` reused as in a run;
- with ``--baseline OLD.py``: the same calls of an older observables module, loaded from that file
  (e.g. a copy of the previous version), for before/after numbers in the same run, plus the largest
  relative difference of its results;
- once per case: building the ``FrameSetup`` (potential tables, volume weights, FFTW planning), and
  numba compile time separately (a cold compile into an empty NUMBA_CACHE_DIR in a subprocess); every
  timed call runs after the kernels are compiled and the cache is warm.

Cases: the built-in exact demo (two interacting fermions, barrier, bias ramp, absorbing layers, three
volumes) at 256^2 and 512^2, and three electrons at 64^3 on a shorter cell.

Usage::

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python scripts/bench_observables.py
    python scripts/bench_observables.py --baseline /tmp/observables_old.py
    python scripts/bench_observables.py --quick          # small cases (smoke test)
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import scipy.fft as sfft

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "bohmpower" / "demo" / "exact_demo.toml"
CASES = [(2, 256), (2, 512), (3, 64)]
QUICK_CASES = [(2, 64), (3, 32)]


def tmin(fn, repeat: int) -> float:
    """Minimum wall time of ``repeat`` calls [s]."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def build_case(n_p: int, n: int):
    """(model, psi at t = 1, t) for the demo run file with N electrons on n points per axis."""
    from bohmpower.config import parse_config
    from bohmpower.driver import initial_state
    from bohmpower.exact.propagator import SplitOperator
    from bohmpower.model import build_model

    with open(DEMO, "rb") as fh:
        d = tomllib.load(fh)
    d = copy.deepcopy(d)
    d["grid"]["points"] = n
    d["particles"]["count"] = n_p
    if n_p == 3:
        # A shorter cell so that 64 points resolve the run (resolution rules of model.resolution).
        d["grid"].update(x_min=-24.0, x_max=24.0, absorber_width=6.0)
        d["initial"]["packet"] = [
            {"center": c, "width": 1.5, "wavenumber": 1.0} for c in (-6.0, -12.0, -18.0)
        ]
        d["volume"][0].update(x_min=-20.0, x_max=-8.0)
        d["volume"][2].update(x_min=8.0, x_max=20.0)
    if n < 128:
        d["grid"].update(x_min=-12.0, x_max=12.0, absorber_width=3.0)
        d["initial"]["packet"] = [
            {"center": c, "width": 1.2, "wavenumber": 0.5} for c in (-1.0, -4.5, 3.0)[:n_p]
        ]
        d["field"][0].update(x_left=-4.0, x_right=4.0)
        d["volume"] = [
            {"name": "left", "x_min": -8.0, "x_max": -3.0},
            {"name": "mid", "x_min": -2.0, "x_max": 2.0, "smoothing": 0.5},
        ]
        d.setdefault("numerics", {})["resolution_fraction"] = 1.0
    cfg = parse_config(d, ROOT)
    model, _ = build_model(cfg.to_atomic(), command="exact")
    psi = initial_state(model)
    dt = cfg.to_atomic().time.dt
    prop = SplitOperator.from_model(model, dt)
    t = prop.advance(psi, 0.0, round(1.0 / dt))
    return model, psi, t, prop


def fft_floor(shape: tuple[int, ...], repeat: int) -> dict[str, float]:
    """In-place forward + inverse N-d FFT of a complex128 array of ``shape``, one thread [s]."""
    a = np.random.default_rng(0).standard_normal(shape) + 0j
    out = {
        "scipy": tmin(
            lambda: (sfft.fftn(a, overwrite_x=True), sfft.ifftn(a, overwrite_x=True)), repeat
        )
    }
    try:
        import pyfftw
    except ImportError:
        return out
    b = pyfftw.empty_aligned(shape, dtype=complex)
    axes = tuple(range(len(shape)))
    fwd = pyfftw.FFTW(b, b, axes=axes, flags=("FFTW_MEASURE",), threads=1)
    bwd = pyfftw.FFTW(
        b,
        b,
        axes=axes,
        direction="FFTW_BACKWARD",
        flags=("FFTW_MEASURE",),
        threads=1,
        normalise_idft=False,
    )
    b[...] = a
    out["pyfftw"] = tmin(lambda: (fwd(), bwd()), repeat)
    return out


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location("observables_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def max_rel_difference(a, b) -> float:
    """Largest difference of two Frames, relative to the largest magnitude of the same kind."""
    worst = 0.0
    for name, v in a.fields.items():
        worst = max(worst, np.max(np.abs(v - b.fields[name])) / (np.max(np.abs(v)) + 1e-300))
    scale = max(abs(x) for vol in a.volumes.values() for x in vol.values() if np.isfinite(x))
    for vname, vol in a.volumes.items():
        for term, x in vol.items():
            if np.isfinite(x):
                worst = max(worst, abs(x - b.volumes[vname][term]) / scale)
    return float(worst)


def compile_time() -> float:
    """Seconds to compile the observables' numba kernels into an empty cache (fresh interpreter)."""
    code = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(ROOT / 'scripts')!r})\n"
        "import bench_observables as B\n"
        "from bohmpower.exact.observables import FrameSetup, frame\n"
        "m, psi, t, _ = B.build_case(2, 64)\n"
        "s = FrameSetup(m)\n"
        "t0 = time.perf_counter(); frame(psi, m, t, diagnostics=False, setup=s)\n"
        "t1 = time.perf_counter(); frame(psi, m, t, diagnostics=False, setup=s)\n"
        "t2 = time.perf_counter()\n"
        "print((t1 - t0) - (t2 - t1))\n"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        res = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    return float(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, help="older observables.py to time side by side")
    ap.add_argument("--quick", action="store_true", help="small cases only")
    ap.add_argument("--repeat", type=int, default=7, help="timed calls per number (min taken)")
    args = ap.parse_args(argv)

    from bohmpower.exact import observables as obs
    from bohmpower.exact.fftbackend import resolve_fft_backend

    base = load_module(args.baseline) if args.baseline else None
    print(
        f"one thread; numpy {np.__version__}; FrameSetup FFT backend: "
        f"{resolve_fft_backend('auto')}"
    )
    print(
        f"numba compile of the observables kernels (cold cache, separate process): "
        f"{compile_time():.1f} s"
    )
    for n_p, n in QUICK_CASES if args.quick else CASES:
        run_case(obs, base, n_p, n, args.repeat)


def run_case(obs, base, n_p: int, n: int, repeat: int) -> dict:
    """Time one case and print its table; returns the numbers [s]."""
    model, psi, t, prop = build_case(n_p, n)
    t0 = time.perf_counter()
    setup = obs.FrameSetup(model)
    obs.frame(psi, model, t, diagnostics=True, setup=setup)  # FFTW plans are made at the first call
    t_setup = time.perf_counter() - t0
    floor = fft_floor(psi.shape, max(5, repeat))
    work = psi.copy()
    step = tmin(lambda: prop.advance(work, t, 1), max(5, repeat))
    new = tmin(lambda: obs.frame(psi, model, t, diagnostics=False, setup=setup), repeat)
    new_d = tmin(
        lambda: obs.frame(psi, model, t, diagnostics=True, setup=setup), max(3, repeat // 2)
    )
    row = {
        "case": f"N={n_p} {n}^{n_p}",
        "setup": t_setup,
        "floor": floor,
        "step": step,
        "new": new,
        "new_d": new_d,
    }
    if base is not None:
        base.frame(psi, model, t, diagnostics=False)
        row["old"] = tmin(lambda: base.frame(psi, model, t, diagnostics=False), repeat)
        row["old_d"] = tmin(
            lambda: base.frame(psi, model, t, diagnostics=True), max(3, repeat // 2)
        )
        row["diff"] = max_rel_difference(
            base.frame(psi, model, t), obs.frame(psi, model, t, setup=setup)
        )

    f_s = floor["scipy"]
    f_w = floor.get("pyfftw", np.nan)
    print(
        f"\n{row['case']}: FFT floor scipy {f_s * 1e3:.2f} ms, pyfftw {f_w * 1e3:.2f} ms; "
        f"propagation step {step * 1e3:.2f} ms; FrameSetup + first call {t_setup * 1e3:.0f} ms"
    )
    print(f"  {'':28s}{'ms':>9s}{'/ scipy floor':>15s}{'/ pyfftw floor':>16s}{'/ step':>9s}")
    labels = [
        ("before, diagnostics=False", "old"),
        ("after,  diagnostics=False", "new"),
        ("before, diagnostics=True", "old_d"),
        ("after,  diagnostics=True", "new_d"),
    ]
    for label, key in labels:
        if key in row:
            sec = row[key]
            print(
                f"  {label:28s}{sec * 1e3:9.2f}{sec / f_s:15.1f}{sec / f_w:16.1f}{sec / step:9.1f}"
            )
    if base is not None:
        print(
            f"  speed-up per step {row['old'] / new:.1f}x; largest relative difference before/after "
            f"{row['diff']:.1e} (fields relative to their own maximum)"
        )
    return row


if __name__ == "__main__":
    main()
