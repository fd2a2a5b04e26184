"""Split-operator propagator of the exact N-electron wavefunction on the full product grid.

The state ``psi`` has shape ``(n_x,)*N`` (axis k is electron k), complex128, C-contiguous, and is
updated in place. Atomic units throughout.

Notes
-----
The effective Hamiltonian is

.. math::

    H_{eff}(t) = \\sum_k \\left[ \\frac{p_k^2}{2m} + U_0(x_k) + q\\phi(x_k,t) - i\\Gamma(x_k) \\right]
                 + \\sum_{j<k} W(x_j - x_k),
    \\qquad q\\phi(x, t) = \\sum_i f_i(t) g_i(x).

Second order (Strang) step from t to t + h, with the potential at the middle of the step:

.. math::

    U_2(t+h, t) = e^{-i \\frac{h}{2} V(t+h/2)} \\, e^{-i h T} \\, e^{-i \\frac{h}{2} V(t+h/2)}.

The step is symmetric (its inverse is the step of -h from t+h), so the triple-jump composition
:math:`U_2(w_1 h) U_2(w_0 h) U_2(w_1 h)` with :math:`w_1 = 1/(2 - 2^{1/3})`,
:math:`w_0 = 1 - 2 w_1` is fourth order (Yoshida 1990; Suzuki 1990); each sub-step uses the potential at
its own mid-time.

Cost and memory. ``V = V_static - i Gamma_tot + sum_k q phi(x_k, t)``. The static part is one N-d
array, precomputed once: for ``order=2`` the phase ``S = exp(-i (h/2)(V_static - i Gamma_tot))``; adjacent
potential half-steps are merged (no frame is taken between them), so interior steps apply ``S**2``
(one complex product, nothing transcendental). For ``order=4`` the merged half-steps have three
incommensurate lengths, so the N-d array holds ``V_static - i Gamma_tot`` itself and the kernel
evaluates the exponential (slower per pass, same memory). The drive and kinetic phases are separable
(products of one 1D vector per axis), never formed as N-d arrays; the FFT normalisation ``1/n_x**N`` is
folded into the kinetic vectors (forward transform unnormalised, inverse with ``norm="forward"``), so a
step of a multi-step advance is: one fused potential pass, one in-place forward FFT, one fused kinetic
pass, one in-place inverse FFT. The FFTs are scipy.fft's (pocketfft, verified to work in place for
these arrays) or, when installed, pyFFTW's (1.5-2x faster per step; ``fft_backend``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import scipy.fft as sfft

from bohmpower.errors import ConfigError

from . import _kernels
from .hamiltonian import coordinate, one_body_sum, pair_sum

__all__ = ["YOSHIDA_W0", "YOSHIDA_W1", "SplitOperator"]

logger = logging.getLogger(__name__)

YOSHIDA_W1 = 1.0 / (2.0 - 2.0 ** (1.0 / 3.0))
YOSHIDA_W0 = 1.0 - 2.0 * YOSHIDA_W1


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
    order : {2, 4}
        2: Strang splitting; 4: triple-jump composition of the Strang step.
    workers : int
        Threads for the FFTs.
    fft_backend : {"auto", "scipy", "pyfftw"}
        FFT library. ``"auto"`` uses pyFFTW when it is installed (measured 1.5-2x faster than
        scipy.fft's pocketfft for these shapes at one thread, benchmarks/README.md) and scipy.fft
        otherwise. Both transform in place; results agree to round-off.

    Attributes
    ----------
    x, dx, n_x, kx, mass, n_particles, u0, gamma, w, drive_shapes, profiles, dt, order, workers,
    fft_backend, shape
        The inputs as validated (gamma zeros when None; drive_shapes (0, n_x) when None), the grid
        spacing, the FFT wavenumbers, the resolved FFT library and the state's shape. Other modules
        (exact.trajectories) read these: keep the names.

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
    ) -> None:
        x = np.ascontiguousarray(x, dtype=float)
        if x.ndim != 1 or x.shape[0] < 2:
            raise ValueError("x must be a 1D grid with at least 2 points")
        n_x = x.shape[0]
        dx = (x[-1] - x[0]) / (n_x - 1)
        if not np.allclose(np.diff(x), dx, rtol=1e-9, atol=0.0):
            raise ValueError("x must be uniform")
        if int(n_particles) < 1:
            raise ConfigError("particles.count", f"must be >= 1, got {n_particles}")
        if not (mass > 0):
            raise ConfigError("particles.mass", f"must be > 0, got {mass}")
        if not (dt > 0):
            raise ConfigError("time.dt", f"must be > 0, got {dt}")
        if order not in (2, 4):
            raise ConfigError("numerics.order", f"must be 2 or 4, got {order}")
        self.fft_backend = _resolve_fft_backend(fft_backend)
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
        self.workers = int(workers)
        self.kx = 2.0 * np.pi * np.fft.fftfreq(n_x, d=self.dx)
        self.u0 = u0
        self.gamma = gamma
        self.w = w
        self.drive_shapes = drive_shapes
        self.profiles = profiles
        self.shape = (n_x,) * self.n_particles
        self._n_lead = self.n_particles - 1
        self._kin_cache: dict[float, np.ndarray] = {}
        self._fft_checked = False

        if self.order == 2:
            self._substeps = ((1.0, 0.5),)  # (fraction of dt, mid-time as a fraction of dt)
        else:
            w1, w0 = YOSHIDA_W1, YOSHIDA_W0
            self._substeps = ((w1, 0.5 * w1), (w0, w1 + 0.5 * w0), (w1, 1.0 - 0.5 * w1))
        # The static N-d array: a phase for order 2 (half step), the complex potential for order 4.
        self._static = self._build_static(0.5 * self.dt if self.order == 2 else None)
        self._static2d = self._static.reshape(-1, n_x)
        logger.debug(
            "SplitOperator: N=%d n_x=%d dt=%g order=%d; static array %.1f MB",
            self.n_particles,
            n_x,
            self.dt,
            self.order,
            self._static.nbytes / 2**20,
        )

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_model(
        cls, model, dt: float, order: int = 2, workers: int = 1, fft_backend: str = "auto"
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
        shapes = np.array([d.potential_shape for d in drives]).reshape(len(drives), -1)
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
        )

    def _build_static(self, tau: float | None) -> np.ndarray:
        """exp(-i tau (V_static - i Gamma_tot)) if tau is given, else V_static - i Gamma_tot.

        Built one slab (first index fixed) at a time so that no N-d temporary is ever allocated:
        the propagator's memory stays psi plus this array.
        """
        n, x = self.n_particles, self.x
        v1 = self.u0 - 1j * self.gamma
        out = np.empty(self.shape, dtype=np.complex128)

        def finish(block: np.ndarray) -> np.ndarray:
            return np.exp(-1j * tau * block) if tau is not None else block

        if n == 1:
            out[...] = finish(v1.astype(np.complex128))
            return out
        rest = one_body_sum(v1, n - 1) + pair_sum(self.w, x, n - 1)
        for i0 in range(self.n_x):
            block = rest + v1[i0]
            if self.w is not None:
                for k in range(n - 1):
                    block = block + self.w(x[i0] - coordinate(x, n - 1, k))
            out[i0] = finish(block)
        return out

    # ------------------------------------------------------------------ public
    @property
    def static_array(self) -> np.ndarray:
        """The precomputed static N-d array (read-only view): phase (order 2) or potential (order 4)."""
        v = self._static.view()
        v.flags.writeable = False
        return v

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
        psi2d = psi.reshape(-1, self.n_x)
        h = self.dt
        # Pending (not yet applied) potential: static duration and drive terms (duration, time).
        pend_tau = 0.0
        pend_drive: list[tuple[float, float]] = []
        for s in range(n_steps):
            t0 = t + s * h
            for frac, mid in self._substeps:
                tau, tm = frac * h, t0 + mid * h
                pend_tau += 0.5 * tau
                pend_drive.append((0.5 * tau, tm))
                self._potential_pass(psi2d, pend_tau, pend_drive)
                self._kinetic(psi, psi2d, tau)
                pend_tau = 0.5 * tau
                pend_drive = [(0.5 * tau, tm)]
        self._potential_pass(psi2d, pend_tau, pend_drive)
        return float(t + n_steps * h)

    # ------------------------------------------------------------------ internals
    def _drive_phase(self, terms: list[tuple[float, float]]) -> np.ndarray:
        if not self.profiles:
            return np.ones(self.n_x, dtype=np.complex128)
        phase = np.zeros(self.n_x)
        for tau, tm in terms:
            phase += tau * self.drive_potential(tm)
        return np.exp(-1j * phase)

    def _potential_pass(self, psi2d: np.ndarray, tau: float, terms: list[tuple[float, float]]):
        vec = self._drive_phase(terms)
        if self.order == 2:
            power = round(tau / (0.5 * self.dt))
            # Only whole multiples of the stored half-step phase occur (1 at the ends, 2 inside).
            assert power in (1, 2) and abs(power * 0.5 * self.dt - tau) <= 1e-12 * self.dt
            _kernels.mul_static_separable_nb(psi2d, self._static2d, power, vec, self._n_lead)
        else:
            _kernels.mul_expstatic_separable_nb(psi2d, self._static2d, tau, vec, self._n_lead)

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


def _resolve_fft_backend(name: str) -> str:
    if name not in ("auto", "scipy", "pyfftw"):
        raise ConfigError(
            "numerics.fft_backend", f"must be 'auto', 'scipy' or 'pyfftw', got {name!r}"
        )
    if name == "scipy":
        return name
    try:
        import pyfftw  # noqa: F401
    except ImportError:
        if name == "pyfftw":
            raise ConfigError(
                "numerics.fft_backend", "'pyfftw' needs the pyFFTW package (pip install pyfftw)"
            ) from None
        return "scipy"
    return "pyfftw"
