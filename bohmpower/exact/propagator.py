"""Split-operator propagator of the exact N-electron wavefunction on the full product grid.

The state ``psi`` has shape ``(n_x,)*N`` (axis k is electron k), complex128, C-contiguous, and is
updated in place. Atomic units throughout.

Notes
-----
The effective Hamiltonian is :math:`H_{eff}(t) = T + V(t)` with

.. math::

    T = \\sum_k \\frac{p_k^2}{2m}, \\qquad
    V(t) = \\sum_k \\left[ U_0(x_k) - i\\Gamma(x_k) + q\\phi(x_k,t) \\right] + \\sum_{j<k} W(x_j - x_k),
    \\qquad q\\phi(x, t) = \\sum_i f_i(t) g_i(x).

A step from t to t + h is a splitting :math:`e^{-i b_s h V(t + c_s h)} e^{-i a_{s-1} h T} \\cdots
e^{-i a_0 h T} e^{-i b_0 h V(t + c_0 h)}` (or the same with T and V exchanged in the arrangement), where
the time is treated as a coordinate advanced by the kinetic flow: each potential stage sees the drive
at its own time :math:`c_j = \\sum_{i<j} a_i`. Adjoining T + d/dt to the kinetic part keeps the
Runge-Kutta-Nystrom structure :math:`[V,[V,[V,T]]] = 0` (T quadratic in p, V and dV/dt functions of x
and t), which the optimised methods below rely on. Methods (``method``; coefficients in ``METHODS``):

- ``"strang_tvt"`` (order 2): :math:`T(h/2)\\,V(t+h/2)\\,T(h/2)`;
- ``"strang_vtv"`` (order 2): :math:`V(t)(h/2)\\,T(h)\\,V(t+h)(h/2)`;
- ``"triple_jump"`` (order 4): Strang (VTV) steps of :math:`w_1 h, w_0 h, w_1 h`,
  :math:`w_1 = 1/(2 - 2^{1/3})`, :math:`w_0 = 1 - 2 w_1` (Yoshida 1990; Suzuki 1990): 3 kinetic stages;
- ``"blanes_moan_4"`` (order 4): SRKN_6^b of S. Blanes and P. C. Moan, J. Comput. Appl. Math. 142,
  313 (2002), Table 3: 6 kinetic stages, 7 potential stages (6 after merging across steps);
- ``"blanes_moan_6"`` (order 6): SRKN_11^b of the same table: 11 kinetic stages.

Adjacent stages of the same kind (also across steps within one ``advance``) are merged, so a step
costs one FFT pair per kinetic stage.

Cost and memory. No N-d array besides ``psi`` is held. The potential factor is a product of
one-body phases (U0 - i Gamma and the drive, one 1D vector per stage) and pair phases: on a uniform
grid x_j - x_k = (i_j - i_k) dx, so exp(-i tau W(x_j - x_k)) is a table of 2 n_x - 1 values. Both are
applied in one fused numba pass (``_kernels.mul_onebody_pair_nb``), at any stage length, with no
transcendental function evaluated per grid point. The kinetic phase is separable too; the FFT
normalisation ``1/n_x**N`` is folded into the kinetic vectors (forward transform unnormalised, inverse
with ``norm="forward"``), so a kinetic stage is one in-place forward FFT, one fused pass and one
in-place inverse FFT. The FFTs are scipy.fft's (pocketfft, verified to work in place for these
arrays) or, when installed, pyFFTW's (1.5-2x faster per step; ``fft_backend``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import scipy.fft as sfft

from bohmpower.errors import ConfigError
from bohmpower.exact.fftbackend import resolve_fft_backend
from bohmpower.model.grid import uniform_grid

from . import _kernels

__all__ = ["DEFAULT_METHOD", "METHODS", "YOSHIDA_W0", "YOSHIDA_W1", "SplitOperator"]

logger = logging.getLogger(__name__)

YOSHIDA_W1 = 1.0 / (2.0 - 2.0 ** (1.0 / 3.0))
YOSHIDA_W0 = 1.0 - 2.0 * YOSHIDA_W1


def _symmetric(first: Sequence[float], middle: float) -> tuple[float, ...]:
    return (*first, middle, *first[::-1])


def _bm4() -> tuple[tuple[float, ...], tuple[float, ...]]:
    # Blanes & Moan (2002), Table 3, SRKN_6^b (order 4): b = potential (kick), a = kinetic (drift).
    b1, b2, b3 = 0.0829844064174052, 0.396309801498368, -0.0390563049223486
    a1, a2 = 0.245298957184271, 0.604872665711080
    a3 = 0.5 - (a1 + a2)
    b4 = 1.0 - 2.0 * (b1 + b2 + b3)
    return _symmetric((b1, b2, b3), b4), (a1, a2, a3, a3, a2, a1)


def _bm6() -> tuple[tuple[float, ...], tuple[float, ...]]:
    # Blanes & Moan (2002), Table 3, SRKN_11^b (order 6).
    b = (0.0414649985182624, 0.198128671918067, -0.0400061921041533, 0.0752539843015807)
    b = (*b, -0.0115113874206879)
    b6 = 0.5 - sum(b)
    a = (0.123229775946271, 0.290553797799558, -0.127049212625417, -0.246331761062075)
    a = (*a, 0.357208872795928)
    a6 = 1.0 - 2.0 * sum(a)
    return (*b, b6, b6, *b[::-1]), _symmetric(a, a6)


def _triple_jump() -> tuple[tuple[float, ...], tuple[float, ...]]:
    w = (YOSHIDA_W1, YOSHIDA_W0, YOSHIDA_W1)
    # Strang VTV of w_i h each; the touching potential half-steps merge: b = (w1/2, (w1+w0)/2, ...).
    b = (0.5 * w[0], 0.5 * (w[0] + w[1]), 0.5 * (w[1] + w[2]), 0.5 * w[2])
    return b, w


def _stages(first: str, outer: Sequence[float], inner: Sequence[float]) -> tuple:
    """Interleave outer (len s+1) and inner (len s) fractions into ((kind, fraction), ...)."""
    other = "T" if first == "V" else "V"
    ops = []
    for i, f in enumerate(outer):
        ops.append((first, float(f)))
        if i < len(inner):
            ops.append((other, float(inner[i])))
    return tuple(ops)


#: Splitting methods: name -> (order, stages), stages a tuple of (kind "T" | "V", fraction of dt).
METHODS: dict[str, tuple[int, tuple]] = {
    "strang_tvt": (2, _stages("T", (0.5, 0.5), (1.0,))),
    "strang_vtv": (2, _stages("V", (0.5, 0.5), (1.0,))),
    "triple_jump": (4, _stages("V", *_triple_jump())),
    "blanes_moan_4": (4, _stages("V", *_bm4())),
    "blanes_moan_6": (6, _stages("V", *_bm6())),
}
#: Method used for each order when ``method`` is not given (benchmarks/README.md: the cheapest).
DEFAULT_METHOD = {2: "strang_tvt", 4: "blanes_moan_4", 6: "blanes_moan_6"}


class _numba_threads:
    """Context: numba's thread count set to ``n`` (capped by NUMBA_NUM_THREADS), then restored."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        import numba

        self.previous = numba.get_num_threads()
        numba.set_num_threads(max(1, min(int(self.n), numba.config.NUMBA_NUM_THREADS)))

    def __exit__(self, *exc):
        import numba

        numba.set_num_threads(self.previous)


class SplitOperator:
    """Exact propagator for N electrons on the product grid (split operator, FFT).

    Parameters
    ----------
    x : ndarray, shape (n_x,)
        Uniform periodic 1D grid [bohr] (``x[i] = x_min + i dx``).
    mass : float
        Electron (effective) mass [m_e].
    n_particles : int
        Number of electrons N >= 1 (axes of ``psi``).
    u0 : ndarray, shape (n_x,)
        Static potential U0(x) [hartree].
    gamma : ndarray, shape (n_x,) or None
        Absorbing rate Gamma(x) >= 0 [hartree]; ``None`` means none.
    w : callable or None
        Pair interaction W(r) [hartree], vectorised over r [bohr]; ``None`` means none.
    drive_shapes : ndarray, shape (n_f, n_x) or None
        Spatial shapes g_i(x) [hartree] of the drive, q*phi(x, t) = sum_i f_i(t) g_i(x).
    profiles : sequence of n_f callables
        Time profiles f_i(t) (dimensionless), each called with a float time [a.u. time].
    dt : float
        Time step [a.u. time].
    order : {2, 4, 6}
        Order of the splitting; the method is ``DEFAULT_METHOD[order]`` unless ``method`` is given.
    workers : int
        Threads for the FFTs.
    fft_backend : {"auto", "scipy", "pyfftw"}
        FFT library. ``"auto"`` uses pyFFTW when it is installed (measured 1.5-2x faster than
        scipy.fft's pocketfft for these shapes at one thread, benchmarks/README.md) and scipy.fft
        otherwise. Both transform in place; results agree to round-off.
    method : str or None
        A key of ``METHODS`` whose order is ``order``; None for the default.

    Attributes
    ----------
    x, dx, n_x, kx, mass, n_particles, u0, gamma, w, drive_shapes, profiles, dt, order, method,
    workers, fft_backend, shape
        The inputs as validated (gamma zeros when None; drive_shapes (0, n_x) when None), the grid
        spacing, the FFT wavenumbers, the resolved method and FFT library and the state's shape. Other
        modules (exact.trajectories) read these: keep the names.

    Notes
    -----
    The numba kernels honour ``NUMBA_NUM_THREADS``; benchmarks run them at one thread.
    pyFFTW plans are measured (FFTW_MEASURE) on a scratch array with psi's alignment, which is freed
    again (one extra wavefunction array, briefly, at the first step), then made on the caller's
    ``psi`` from that wisdom; they are kept for the last ``psi`` buffer only, so no old state is kept
    alive.
    """

    def __init__(
        self,
        x: np.ndarray,
        mass: float,
        n_particles: int,
        u0: np.ndarray,
        gamma: np.ndarray | None,
        w: Callable[[np.ndarray], np.ndarray] | None,
        drive_shapes: np.ndarray | None,
        profiles: Sequence[Callable[[float], float]] | None,
        dt: float,
        order: int = 2,
        workers: int = 1,
        fft_backend: str = "auto",
        method: str | None = None,
    ) -> None:
        x = np.ascontiguousarray(x, dtype=float)
        _, dx, n_x = uniform_grid(x, min_points=2)
        if int(n_particles) < 1:
            raise ConfigError("particles.count", f"must be >= 1, got {n_particles}")
        if not (mass > 0):
            raise ConfigError("particles.mass", f"must be > 0, got {mass}")
        if not (dt > 0):
            raise ConfigError("time.dt", f"must be > 0, got {dt}")
        if order not in DEFAULT_METHOD:
            raise ConfigError("numerics.order", f"must be 2, 4 or 6, got {order}")
        method = DEFAULT_METHOD[order] if method is None else method
        if method not in METHODS or METHODS[method][0] != order:
            allowed = [m for m, (o, _) in METHODS.items() if o == order]
            raise ValueError(f"method must be one of {allowed} for order {order}, got {method!r}")
        self.fft_backend = resolve_fft_backend(fft_backend)
        self._fftw_plans: tuple | None = None
        u0 = np.asarray(u0, dtype=float)
        if u0.shape != (n_x,):
            raise ValueError(f"u0 has shape {u0.shape}, expected ({n_x},)")
        gamma = np.zeros(n_x) if gamma is None else np.asarray(gamma, dtype=float)
        if gamma.shape != (n_x,):
            raise ValueError(f"gamma has shape {gamma.shape}, expected ({n_x},)")
        if np.any(gamma < 0):
            raise ValueError("gamma must be >= 0 (an absorbing rate)")
        if drive_shapes is None or len(np.shape(drive_shapes)) == 0:
            drive_shapes = np.zeros((0, n_x))
        drive_shapes = np.atleast_2d(np.asarray(drive_shapes, dtype=float))
        if drive_shapes.shape[0] == 0:
            drive_shapes = drive_shapes.reshape(0, n_x)
        profiles = tuple(profiles or ())
        if drive_shapes.shape[1] != n_x or drive_shapes.shape[0] != len(profiles):
            raise ValueError(
                f"drive_shapes has shape {drive_shapes.shape}; expected ({len(profiles)}, {n_x}) "
                "(one shape per profile)"
            )

        self.x = x
        self.dx = float(dx)
        self.n_x = n_x
        self.n_particles = int(n_particles)
        self.mass = float(mass)
        self.dt = float(dt)
        self.order = int(order)
        self.method = method
        self.workers = int(workers)
        self.kx = 2.0 * np.pi * np.fft.fftfreq(n_x, d=self.dx)
        self.u0 = u0
        self.gamma = gamma
        self.w = w
        self.drive_shapes = drive_shapes
        self.profiles = profiles
        self.shape = (n_x,) * self.n_particles
        self._n_lead = self.n_particles - 1
        self._fft_checked = False

        # Stages with the time of each potential stage (fraction of dt) = kinetic fractions before it.
        stages, c = [], 0.0
        for kind, frac in METHODS[method][1]:
            stages.append((kind, frac, c))
            if kind == "T":
                c += frac
        self._stages = tuple(stages)
        self._u0c = (u0 - 1j * gamma).astype(np.complex128)
        if w is not None and self.n_particles > 1:
            # W at every index difference d = -(n_x-1) .. n_x-1 (x_j - x_k = d dx on a uniform grid)
            self._wvals = np.asarray(w(np.arange(-(n_x - 1), n_x) * self.dx), dtype=float)
        else:
            self._wvals = None
        self._kin_cache: dict[float, np.ndarray] = {}
        self._pair_cache: dict[float, np.ndarray] = {}
        self._no_pairs = np.zeros(0, dtype=np.complex128)
        logger.debug(  # (dt is logged by the run loop, in the run file's units)
            "SplitOperator: N=%d n_x=%d order=%d method=%s",
            self.n_particles,
            n_x,
            self.order,
            method,
        )

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_model(
        cls,
        model,
        dt: float,
        order: int = 2,
        workers: int = 1,
        fft_backend: str = "auto",
        method: str | None = None,
    ) -> SplitOperator:
        """Build from a :class:`bohmpower.model.Model` (duck-typed; see docs/design.md).

        Uses ``model.grid.x``, ``mass``, ``n_particles``, ``u0``, ``gamma``, ``interaction.w``
        (no interaction when ``interaction`` is None or its ``kind`` is ``"none"``) and, for each
        drive, ``potential_shape`` and ``profile``.
        """
        inter = getattr(model, "interaction", None)
        w = None
        if inter is not None and getattr(inter, "kind", "none") != "none":
            w = inter.w
        drives = tuple(getattr(model, "drives", ()) or ())
        shapes = np.array([d.potential_shape for d in drives]).reshape(len(drives), model.grid.n_x)
        profiles = [d.profile for d in drives]
        return cls(
            model.grid.x,
            model.mass,
            model.n_particles,
            model.u0,
            getattr(model, "gamma", None),
            w,
            shapes if drives else None,
            profiles,
            dt,
            order=order,
            workers=workers,
            fft_backend=fft_backend,
            method=method,
        )

    # ------------------------------------------------------------------ public
    @property
    def kinetic_stages(self) -> int:
        """FFT pairs per step (kinetic stages after merging; cost unit of a step)."""
        kinds = [k for k, _, _ in self._stages]
        n = kinds.count("T")
        return n - 1 if kinds[0] == kinds[-1] == "T" else n

    def drive_potential(self, t: float) -> np.ndarray:
        """q*phi(x, t) = sum_i f_i(t) g_i(x) on the grid, shape (n_x,) [hartree]."""
        if not self.profiles:
            return np.zeros(self.n_x)
        f = np.array([float(p(t)) for p in self.profiles])
        return f @ self.drive_shapes

    def advance(self, psi: np.ndarray, t: float, n_steps: int) -> float:
        """Propagate ``psi`` in place by ``n_steps`` steps of ``dt`` from time ``t``.

        Parameters
        ----------
        psi : ndarray, complex128, C-contiguous, shape (n_x,)*N
            The state at time ``t``; overwritten with the state at the returned time.
        t : float
            Current time [a.u. time].
        n_steps : int
            Number of steps (>= 0).

        Returns
        -------
        float
            The new time ``t + n_steps * dt``.
        """
        if psi.shape != self.shape or psi.dtype != np.complex128 or not psi.flags.c_contiguous:
            raise ValueError(
                f"psi must be C-contiguous complex128 of shape {self.shape}, got "
                f"{psi.dtype} {psi.shape} (contiguous={psi.flags.c_contiguous})"
            )
        n_steps = int(n_steps)
        if n_steps <= 0:
            return float(t)
        # The fused kernels are parallel loops: run them on `workers` threads, not on numba's
        # default of every core (on a shared or MPI-filled node that oversubscribes: the demo ran
        # 2.4x slower with two threads on a loaded 2-core machine).
        with _numba_threads(self.workers):
            return self._advance(psi, t, n_steps)

    def _advance(self, psi: np.ndarray, t: float, n_steps: int) -> float:
        psi2d = psi.reshape(-1, self.n_x)
        h = self.dt
        # One pending (not yet applied) stage: its kind, total length, and for the potential the
        # (length, time) of each merged piece, since the drive differs between their times.
        kind, tau, pieces = None, 0.0, []
        for s in range(n_steps):
            t0 = t + s * h
            for k, frac, c in self._stages:
                if k != kind:
                    if kind is not None:
                        self._apply(psi, psi2d, kind, tau, pieces)
                    kind, tau, pieces = k, 0.0, []
                tau += frac * h
                if k == "V":
                    tm = t0 + c * h
                    if pieces and abs(pieces[-1][1] - tm) <= 1e-12 * h:
                        pieces[-1] = (pieces[-1][0] + frac * h, pieces[-1][1])
                    else:
                        pieces.append((frac * h, tm))
        self._apply(psi, psi2d, kind, tau, pieces)
        return float(t + n_steps * h)

    # ------------------------------------------------------------------ internals
    def _apply(self, psi, psi2d, kind: str, tau: float, pieces: list) -> None:
        if kind == "T":
            self._kinetic(psi, psi2d, tau)
        else:
            self._potential(psi2d, tau, pieces)

    def _potential(self, psi2d: np.ndarray, tau: float, pieces: list) -> None:
        phase = tau * self._u0c
        if self.profiles:
            coef = np.zeros(len(self.profiles))
            for length, tm in pieces:
                coef += length * np.array([float(p(tm)) for p in self.profiles])
            phase = phase + coef @ self.drive_shapes
        vec = np.exp(-1j * phase)
        _kernels.mul_onebody_pair_nb(psi2d, vec, self._pair_table(tau), self._n_lead)

    def _pair_table(self, tau: float) -> np.ndarray:
        if self._wvals is None:
            return self._no_pairs
        tab = self._pair_cache.get(tau)
        if tab is None:
            tab = np.exp(-1j * tau * self._wvals)
            self._pair_cache[tau] = tab
        return tab

    def _kinetic_vector(self, tau: float) -> np.ndarray:
        vec = self._kin_cache.get(tau)
        if vec is None:
            # 1/n_x per axis: the product over N axes is the 1/n_x**N of the inverse FFT.
            vec = np.exp(-1j * tau * self.kx**2 / (2.0 * self.mass)) / self.n_x
            self._kin_cache[tau] = vec
        return vec

    def _kinetic(self, psi: np.ndarray, psi2d: np.ndarray, tau: float) -> None:
        if self.fft_backend == "pyfftw":
            forward, backward = self._fftw_pair(psi)
            forward.execute()
            _kernels.mul_separable_nb(psi2d, self._kinetic_vector(tau), self._n_lead)
            backward.execute()
            return
        c = sfft.fftn(psi, overwrite_x=True, workers=self.workers)
        if c is not psi:
            self._not_in_place(psi, c, "fftn")
        _kernels.mul_separable_nb(psi2d, self._kinetic_vector(tau), self._n_lead)
        c = sfft.ifftn(psi, norm="forward", overwrite_x=True, workers=self.workers)
        if c is not psi:
            self._not_in_place(psi, c, "ifftn")

    def _fftw_pair(self, psi: np.ndarray) -> tuple:
        plans = self._fftw_plans
        if plans is not None and plans[0] is psi:
            return plans[1], plans[2]
        import pyfftw

        self._fftw_plans = None  # drop the old plans (and their reference to an old psi) first
        common = {"axes": tuple(range(psi.ndim)), "threads": self.workers}
        # FFTW_MEASURE overwrites the arrays it plans on, so measure on a scratch array with psi's
        # alignment (wisdom is alignment-specific), free it, then plan on psi from that wisdom only
        # (FFTW_WISDOM_ONLY never touches the data). FFTW_ESTIMATE plans measured 5-8x slower.
        scratch = _aligned_like(psi)
        pyfftw.FFTW(scratch, scratch, direction="FFTW_FORWARD", flags=("FFTW_MEASURE",), **common)
        pyfftw.FFTW(scratch, scratch, direction="FFTW_BACKWARD", flags=("FFTW_MEASURE",), **common)
        del scratch
        pairs = []
        for direction in ("FFTW_FORWARD", "FFTW_BACKWARD"):
            try:
                flags = ("FFTW_MEASURE", "FFTW_WISDOM_ONLY")
                # Unnormalised inverse: the 1/n_x**N is folded into the kinetic vectors.
                plan = pyfftw.FFTW(
                    psi, psi, direction=direction, flags=flags, normalise_idft=False, **common
                )
            except RuntimeError:
                logger.warning("no FFTW wisdom for psi's layout: FFTW_ESTIMATE plan (slower)")
                plan = pyfftw.FFTW(
                    psi,
                    psi,
                    direction=direction,
                    flags=("FFTW_ESTIMATE",),
                    normalise_idft=False,
                    **common,
                )
            pairs.append(plan)
        self._fftw_plans = (psi, pairs[0], pairs[1])
        return pairs[0], pairs[1]

    def _not_in_place(self, psi: np.ndarray, c: np.ndarray, name: str) -> None:
        # scipy.fft documents overwrite_x as a permission, not a promise. pocketfft returns a new
        # array object over psi's own buffer when it works in place; otherwise copy back.
        if c.ctypes.data == psi.ctypes.data and c.strides == psi.strides:
            return
        if not self._fft_checked:
            logger.warning("scipy.fft.%s did not work in place: copying back (extra memory)", name)
            self._fft_checked = True
        psi[...] = c


def _aligned_like(psi: np.ndarray) -> np.ndarray:
    """An empty array of psi's shape and dtype whose address has psi's offset modulo 64 bytes."""
    offset = psi.ctypes.data % 64
    buf = np.empty(psi.nbytes + 64, dtype=np.uint8)
    start = (offset - buf.ctypes.data) % 64
    return buf[start : start + psi.nbytes].view(psi.dtype).reshape(psi.shape)


