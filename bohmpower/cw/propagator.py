"""Batched propagation of one-particle conditional wavefunctions (CWs), and their point derivatives.

For each of B sampled worlds the state holds C one-particle CWs on the grid: ``psi`` complex128 of shape
(B, C, M). CW c of world b belongs to electron ``owner[c]`` and evolves in that electron's conditional
potential (THEORY.md section 4.2, zeroth order):

.. math::

    i \\partial_t \\psi = \\left[-\\frac{1}{2m}\\partial_x^2 + U_0(x) + q\\phi(x,t)
        + \\sum_{j \\ne a} W(x - X_j(t)) - i\\Gamma(x)\\right]\\psi, \\qquad a = \\mathrm{owner}[c].

Without exchange C = N and owner = arange(N); with exchange (Alarcon et al. 2013) C = N^2 and
owner = repeat(arange(N), N): electron a's N orbitals share a's potential.

Notes
-----
**Propagator: Strang splitting with FFTs.** A step from t to t + dt is

.. math::

    \\psi \\leftarrow e^{-i h V_a} \\, \\mathcal{F}^{-1} e^{-i\\, dt\\, k^2/2m} \\mathcal{F} \\,
    e^{-i h V_a} \\psi, \\qquad h = dt/2,

with both potential half steps built from the positions X_mid at the middle of the step and the drive at
t + dt/2. The error is O(dt^3) per step (second order), which matches the engine's second-order
(midpoint/Heun) trajectory integrator: a higher-order propagator would not improve the joint error,
a first-order one would spoil it. Taking the potential at the mid-step point is what keeps the
time-dependent splitting second order (the midpoint rule for the time-ordered exponential).

Against Crank-Nicolson (CN), also second order: (i) cost: CN needs a tridiagonal (or, for the same
spectral accuracy, dense) solve per CW and step, and its 3-point Laplacian has an O(dx^2) dispersion
error that the FFT kinetic phase does not have (spectral in x); (ii) accuracy: CN's phase error grows
like dt^2 E^3 for high energies and is coupled to the spatial error, while the split step is exact for
the free motion and for a static potential separately; (iii) unitarity: both are exactly unitary
without Gamma (CN through the Cayley form, split operator as a product of unit-modulus phases); with
Gamma the split step multiplies by exp(-h Gamma) <= 1, so the norm can only decrease. The
split step is also what the exact propagator uses, so both sides share the same discretisation.

**Interaction in O(N M) per world.** Wsum_b(x) = sum_j W(x - X_bj) is accumulated once (the rows
W(x - X_bj) are kept in an (N, M) scratch array); owner a's potential is Wsum_b - W(x - X_ba). No
O(N^2 M) sum is ever formed. With exchange each owner's phase is built once and applied to its N
orbitals. The interaction kinds of :class:`bohmpower.model.interaction.Interaction` (soft Coulomb,
harmonic) are evaluated inside the kernels; any other callable ``w`` is evaluated with numpy on
(worlds, N, M) blocks of at most ``_TABLE_BYTES`` and passed in.

**FFT engine, chosen by measurement** (scripts/bench_cw.py; M = 1024, one thread, AMD EPYC znver4,
shared machine): rocket-fft (DUCC0 called from the numba kernel) processes one CW at a time entirely
in cache: potential phase, FFT, kinetic phase, inverse FFT, potential phase. Its FFT floor (a pair of
1024-point transforms per row, in place) is 5.0-5.3 us, against 8.5-12.5 us per row for batched
scipy.fft (pocketfft) over the (B*C, M) array in place and 7.0 us for batched pyFFTW (FFTW_MEASURE).
Whole step per CW: 8-12 us (1.6-2.3x the rocket floor; N = 1, 10, 100, with and without exchange),
against 15-22 us for the batched scipy path (``fft_backend="scipy"``: numba phase kernels, scipy
FFTs over runs of live worlds), which is kept for comparison and as a fallback without rocket-fft.

**Phases.** numba without Intel SVML calls scalar libm sin and cos (9.5 us per 1024 points, more than
an FFT pair); the kernels use a branch-free Cody-Waite reduction and Taylor polynomials on
[-pi/4, pi/4] that LLVM vectorises (1.9 us, error 1.6e-16).

**Point derivatives** (:meth:`ConditionalPropagator.derivatives`) use a local Lagrange stencil of
``n_stencil`` points (Fornberg weights for the value and the first two derivatives), O(n_stencil)
per point, on the periodic grid. The exact trigonometric interpolant costs O(M) per point plus an FFT
per CW; with exchange every CW is needed at all N positions, which would cost N times the
propagation itself. Measured against the exact trigonometric value (scripts/bench_cw.py, Gaussian
packets, maximum relative error of d psi/psi over k0 and of psi''/psi over k0^2), with 12 points
(the default): k0 dx = 0.3: 4e-9, 4e-8; k0 dx = 0.5: 3e-7, 1.4e-6; k0 dx = 1.0: 2e-4, 4e-4 (16 points:
9e-12, 2e-9, 1e-5 for v). Cost 0.3 us per point when each CW has its own point, about 30 ns per
point (in cache) when a world's points are shared by its CWs (exchange); exact trigonometric: 80 us
per point in numpy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numba
import numpy as np
import scipy.fft as sfft

from bohmpower.errors import ConfigError
from bohmpower.model.grid import uniform_grid
from bohmpower.model.interaction import Interaction

from . import _kernels as K

__all__ = ["DEFAULT_STENCIL", "ConditionalPropagator", "owner_layout"]

logger = logging.getLogger(__name__)

#: Stencil points of :meth:`ConditionalPropagator.derivatives` (see the module Notes).
DEFAULT_STENCIL = 12
#: Largest W table (bytes) evaluated at once for a generic interaction callable.
_TABLE_BYTES = 32 * 2**20


def owner_layout(n_particles: int, exchange: bool) -> np.ndarray:
    """Owner of each CW: arange(N) without exchange, repeat(arange(N), N) with exchange (C = N^2)."""
    n = int(n_particles)
    return np.repeat(np.arange(n), n) if exchange else np.arange(n)


def _classify_interaction(w: Callable | None) -> tuple[int, float, float]:
    """Map ``w`` to the kernels' (kind, p1, p2); a bound ``Interaction.w`` is evaluated in numba."""
    if w is None:
        return K.W_NONE, 0.0, 0.0
    inter = getattr(w, "__self__", None)
    if isinstance(inter, Interaction) and getattr(w, "__func__", None) is Interaction.w:
        if inter.kind == "soft_coulomb":
            return K.W_SOFT, 1.0 / inter.eps_r, inter.softening**2
        if inter.kind == "harmonic":
            return K.W_HARMONIC, 0.5 * inter.strength, 0.0
        if inter.kind == "none":
            return K.W_NONE, 0.0, 0.0
    return K.W_TABLE, 0.0, 0.0


class ConditionalPropagator:
    """Strang split-operator propagator of B x C one-particle conditional wavefunctions.

    Parameters
    ----------
    x : ndarray, shape (M,)
        Uniform periodic grid [bohr], x[i] = x_min + i dx.
    mass : float
        Electron (effective) mass [m_e].
    u0 : ndarray, shape (M,)
        Static potential U0(x) [hartree].
    gamma : ndarray, shape (M,), or None
        Absorbing rate Gamma(x) >= 0 [hartree]; the CW Hamiltonian gets -i Gamma(x). None: none.
    w : callable or None
        Pair interaction W(r) [hartree], vectorised over r [bohr]; None: no interaction.
        ``Interaction.w`` of the model is recognised and evaluated inside the kernels.
    drive_shapes : ndarray, shape (n_f, M), or None
        Drive shapes g_i(x) [hartree], q*phi(x, t) = sum_i profiles[i](t) g_i(x).
    profiles : sequence of n_f callables
        Time profiles f_i(t) (dimensionless).
    dt : float
        Time step [a.u. time].
    workers : int
        Threads: numba threads over worlds (rocket-fft path) or FFT workers (scipy path).

    Attributes
    ----------
    x, dx, n_x, k, mass, u0, gamma, w, drive_shapes, profiles, dt, workers
        Inputs as validated (gamma zeros when None, drive_shapes (0, M) when None), spacing, FFT
        angular wavenumbers.
    fft_backend : {"rocket", "scipy"}
        "rocket" (default when rocket-fft is installed) or "scipy"; may be set after construction.
    n_stencil : int
        Stencil points of :meth:`derivatives` (even, 4 .. 16); may be set after construction.
    """

    def __init__(
        self,
        x: np.ndarray,
        mass: float,
        u0: np.ndarray,
        gamma: np.ndarray | None,
        w: Callable[[np.ndarray], np.ndarray] | None,
        drive_shapes: np.ndarray | None,
        profiles: Sequence[Callable[[float], float]] | None,
        dt: float,
        workers: int = 1,
    ) -> None:
        x = np.ascontiguousarray(x, dtype=float)
        _, dx, n_x = uniform_grid(x, min_points=4)
        if not (mass > 0):
            raise ConfigError("particles.mass", f"must be > 0, got {mass}")
        if not (dt > 0):
            raise ConfigError("time.dt", f"must be > 0, got {dt}")
        if int(workers) < 1:
            raise ConfigError("numerics.fft_workers", f"must be >= 1, got {workers}")
        u0 = np.ascontiguousarray(u0, dtype=float)
        if u0.shape != (n_x,):
            raise ValueError(f"u0 has shape {u0.shape}, expected ({n_x},)")
        gamma = np.zeros(n_x) if gamma is None else np.ascontiguousarray(gamma, dtype=float)
        if gamma.shape != (n_x,):
            raise ValueError(f"gamma has shape {gamma.shape}, expected ({n_x},)")
        if np.any(gamma < 0):
            raise ValueError("gamma must be >= 0 (an absorbing rate)")
        profiles = tuple(profiles or ())
        if drive_shapes is None:
            drive_shapes = np.zeros((0, n_x))
        drive_shapes = np.asarray(drive_shapes, dtype=float).reshape(-1, n_x)
        if drive_shapes.shape[0] != len(profiles):
            raise ValueError(
                f"drive_shapes has {drive_shapes.shape[0]} rows but {len(profiles)} profiles"
            )
        self.x = x
        self.dx = float(dx)
        self.n_x = n_x
        self.k = 2.0 * np.pi * np.fft.fftfreq(n_x, d=self.dx)
        self.mass = float(mass)
        self.u0 = u0
        self.gamma = gamma
        self.w = w
        self.drive_shapes = drive_shapes
        self.profiles = profiles
        self.dt = float(dt)
        self.workers = int(workers)
        self.fft_backend = "rocket" if K.HAVE_ROCKET_FFT else "scipy"
        self.n_stencil = DEFAULT_STENCIL
        self._kind, self._p1, self._p2 = _classify_interaction(w)
        # exp(-i dt k^2 / 2m) with the 1/M of the inverse transform folded in
        self._kin = np.exp(-1j * self.dt * self.k**2 / (2.0 * self.mass)) / n_x
        self._no_table = np.zeros((0, 0, 0))
        self._phases: np.ndarray | None = None
        logger.debug(  # (dt is logged by the run loop, in the run file's units)
            "ConditionalPropagator: M=%d interaction kind %d, FFT %s",
            n_x, self._kind, self.fft_backend,
        )  # fmt: skip

    # ---------------------------------------------------------------------------------- helpers
    def drive_potential(self, t: float) -> np.ndarray:
        """q*phi(x, t) = sum_i f_i(t) g_i(x) on the grid, shape (M,) [hartree]."""
        if not self.profiles:
            return np.zeros(self.n_x)
        f = np.array([float(p(t)) for p in self.profiles])
        return f @ self.drive_shapes

    def base_phase(self, t: float) -> np.ndarray:
        """exp(-i (dt/2) [U0 + q phi(x, t + dt/2) - i Gamma]), shape (M,): the interaction-free half step."""
        h = 0.5 * self.dt
        v = self.u0 + self.drive_potential(t + h)
        return np.exp(-1j * h * v - h * self.gamma)

    def owner_potentials(self, t: float, X_mid: np.ndarray) -> np.ndarray:
        """Each electron's conditional potential at mid-step, shape (B, N, M) [hartree] (diagnostics).

        Real part U0 + q phi(x, t + dt/2) + sum_{j != a} W(x - X_mid[b, j]); imaginary part -Gamma(x).
        """
        X_mid = np.asarray(X_mid, dtype=float)
        base = self.u0 + self.drive_potential(t + 0.5 * self.dt) - 1j * self.gamma
        out = np.broadcast_to(base, (*X_mid.shape, self.n_x)).copy()
        if self.w is not None:
            wr = np.asarray(self.w(self.x[None, None, :] - X_mid[:, :, None]), dtype=float)
            out += wr.sum(axis=1, keepdims=True) - wr
        return out

    def _kind_for(self, n: int) -> int:
        # one electron has no partner: Wsum - W_own = 0, skip the interaction rows and phases
        return self._kind if n > 1 else K.W_NONE

    def _table(self, X_mid: np.ndarray) -> np.ndarray:
        if self._kind_for(X_mid.shape[1]) != K.W_TABLE:
            return self._no_table
        return np.ascontiguousarray(self.w(self.x[None, None, :] - X_mid[:, :, None]), dtype=float)

    def _check(self, psi: np.ndarray, owner: np.ndarray, X_mid: np.ndarray) -> tuple:
        if psi.dtype != np.complex128 or psi.ndim != 3 or not psi.flags.c_contiguous:
            raise ValueError("psi must be a C-contiguous complex128 array of shape (B, C, M)")
        if psi.shape[2] != self.n_x:
            raise ValueError(f"psi has {psi.shape[2]} grid points, the grid {self.n_x}")
        owner = np.ascontiguousarray(owner, dtype=np.int64)
        X_mid = np.ascontiguousarray(X_mid, dtype=float)
        if owner.shape != (psi.shape[1],):
            raise ValueError(f"owner has shape {owner.shape}, expected ({psi.shape[1]},)")
        if X_mid.ndim != 2 or X_mid.shape[0] != psi.shape[0]:
            raise ValueError(f"X_mid has shape {X_mid.shape}, expected ({psi.shape[0]}, N)")
        if owner.size and (owner.min() < 0 or owner.max() >= X_mid.shape[1]):
            raise ValueError("owner entries must lie in 0 .. N-1 (N = X_mid.shape[1])")
        return owner, X_mid

    # ---------------------------------------------------------------------------------- step
    def step(self, psi: np.ndarray, t: float, owner: np.ndarray, X_mid: np.ndarray) -> None:
        """Advance every CW in place from t to t + dt.

        Parameters
        ----------
        psi : ndarray, complex128, shape (B, C, M)
            CWs, C-contiguous; updated in place.
        t : float
            Time at the start of the step [a.u. time].
        owner : ndarray of int, shape (C,)
            Electron whose conditional potential CW c feels (see :func:`owner_layout`).
        X_mid : ndarray, shape (B, N)
            Electron positions at t + dt/2 [bohr]; a row containing NaN is a removed world, whose CWs
            are left untouched.
        """
        owner, X_mid = self._check(psi, owner, X_mid)
        base = self.base_phase(t)
        h = 0.5 * self.dt
        if self.fft_backend == "rocket":
            self._step_rocket(psi, owner, X_mid, base, h)
        elif self.fft_backend == "scipy":
            self._step_scipy(psi, owner, X_mid, base, h)
        else:
            raise ValueError(f"fft_backend must be 'rocket' or 'scipy', got {self.fft_backend!r}")

    def step_pool(self, psi: np.ndarray, t: float, group: np.ndarray, X_mid: np.ndarray,
                  n_groups: int) -> None:
        """Advance a pool of electrons from several worlds, in place, from t to t + dt.

        The layout of an open system (:mod:`bohmpower.devices.engine`), whose worlds hold different
        numbers of electrons: row p of ``psi`` (P, 1, M) is one electron of world ``group[p]``
        (0 .. n_groups - 1) at mid-step position ``X_mid[p]``, and it evolves in the zeroth-order
        conditional potential of :meth:`step`, U0 + q phi + sum of W(x - X_q) over the other
        electrons q of its own world, - i Gamma. For worlds of equal size this is :meth:`step` with
        owner = arange(N) (tested).
        """
        if psi.dtype != np.complex128 or psi.ndim != 3 or not psi.flags.c_contiguous \
                or psi.shape[2] != self.n_x:
            raise ValueError(f"psi must be a C-contiguous complex128 array of shape (P, 1, {self.n_x})")
        X_mid = np.ascontiguousarray(X_mid, dtype=float)
        group = np.ascontiguousarray(group, dtype=np.int64)
        if X_mid.shape != (psi.shape[0],) or group.shape != X_mid.shape:
            raise ValueError(f"group and X_mid must have shape ({psi.shape[0]},)")
        if self._kind == K.W_TABLE:
            raise ValueError("step_pool evaluates the interaction kinds of Interaction only")
        base = self.base_phase(t)
        h = 0.5 * self.dt
        if self._kind == K.W_NONE:
            phases = np.broadcast_to(base, (psi.shape[0], self.n_x))
        else:
            phases = np.empty((psi.shape[0], self.n_x), dtype=complex)
            K.pool_phases_nb(group, X_mid, self.x, base, self._kind, self._p1, self._p2, h,
                             int(n_groups), phases)
        if self.fft_backend == "rocket" and K.HAVE_ROCKET_FFT:
            K.step_rows_nb(psi, np.ascontiguousarray(phases), self._kin)
            return
        psi *= phases[:, None, :]
        out = sfft.fft(psi, axis=-1, overwrite_x=True, workers=self.workers)
        out *= self._kin
        out = sfft.ifft(out, axis=-1, overwrite_x=True, workers=self.workers, norm="forward")
        psi[...] = out * phases[:, None, :]

    def _world_blocks(self, n_b: int, n: int):
        per_world = max(1, n * self.n_x * 8)
        size = max(1, _TABLE_BYTES // per_world) if self._kind == K.W_TABLE else n_b
        for b0 in range(0, n_b, size):
            yield b0, min(n_b, b0 + size)

    def _step_rocket(self, psi, owner, X_mid, base, h) -> None:
        if not K.HAVE_ROCKET_FFT:
            raise ValueError(
                "fft_backend 'rocket' needs the rocket-fft package (pip install rocket-fft)"
            )
        n_thr = min(self.workers, numba.config.NUMBA_NUM_THREADS)
        for b0, b1 in self._world_blocks(psi.shape[0], X_mid.shape[1]):
            p, xm = psi[b0:b1], X_mid[b0:b1]
            kind = self._kind_for(X_mid.shape[1])
            args = (p, owner, xm, self.x, base, self._kin, kind, self._p1, self._p2)
            if n_thr > 1 and b1 - b0 > 1:
                old = numba.get_num_threads()
                numba.set_num_threads(n_thr)
                try:
                    K.step_worlds_par_nb(*args, self._table(xm), h, min(n_thr, b1 - b0))
                finally:
                    numba.set_num_threads(old)
            else:
                K.step_worlds_nb(*args, self._table(xm), h)

    def _step_scipy(self, psi, owner, X_mid, base, h) -> None:
        n_b, n = X_mid.shape
        if self._phases is None or self._phases.shape != (n_b, n, self.n_x):
            self._phases = np.empty((n_b, n, self.n_x), dtype=complex)
        ph = self._phases
        for b0, b1 in self._world_blocks(n_b, n):
            xm = X_mid[b0:b1]
            K.owner_phases_nb(
                xm,
                self.x,
                base,
                self._kind_for(n),
                self._p1,
                self._p2,
                self._table(xm),
                h,
                ph[b0:b1],
            )
        alive = ~np.isnan(X_mid).any(axis=1)
        # contiguous runs of live worlds, so the FFTs run in place on views of psi
        edges = np.flatnonzero(np.diff(np.concatenate(([0], alive.view(np.int8), [0]))))
        for b0, b1 in zip(edges[::2], edges[1::2], strict=True):
            blk = psi[b0:b1]
            K.mul_owner_phase_nb(blk, owner, ph[b0:b1])
            out = sfft.fft(blk, axis=-1, overwrite_x=True, workers=self.workers)
            if not np.shares_memory(out, blk):
                blk[...] = out
            blk *= self._kin
            out = sfft.ifft(blk, axis=-1, overwrite_x=True, workers=self.workers, norm="forward")
            if not np.shares_memory(out, blk):
                blk[...] = out
            K.mul_owner_phase_nb(blk, owner, ph[b0:b1])

    # ---------------------------------------------------------------------------------- points
    def derivatives(
        self, psi: np.ndarray, X: np.ndarray, owner_rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Value, first and second x-derivative of every CW at given points.

        Parameters
        ----------
        psi : ndarray, complex128, shape (B, C, M)
        X : ndarray
            Either electron positions, shape (B, N) [bohr]: CW c of world b is evaluated at its
            owner's position X[b, owner_rows[c]]; or points, shape (B, C, P) or (B, 1, P) (the same
            P points for every CW of a world, cheaper: the weights are computed once per point).
        owner_rows : ndarray of int, shape (C,), optional
            Owners for the (B, N) form; default ``owner_layout(N, exchange)`` inferred from C = N
            (no exchange) or C = N^2 (exchange). Ignored for the (B, C, P) form.

        Returns
        -------
        values, d1, d2 : ndarray, complex128
            psi, d psi/dx [1/bohr], d^2 psi/dx^2 [1/bohr^2] (times psi's units); shape (B, C) for the
            (B, N) form, (B, C, P) for points. NaN where the point is NaN (removed worlds).

        Notes
        -----
        A local Lagrange interpolant through ``n_stencil`` grid points around each point (periodic
        grid), differentiated analytically (Fornberg weights); cost O(n_stencil) per point.
        """
        if psi.ndim != 3 or psi.shape[2] != self.n_x:
            raise ValueError(f"psi must have shape (B, C, {self.n_x})")
        n_b, n_c, _ = psi.shape
        X = np.asarray(X, dtype=float)
        squeeze = X.ndim == 2
        if squeeze:
            n = X.shape[1]
            if owner_rows is None:
                if n_c == n:
                    owner_rows = np.arange(n)
                elif n_c == n * n:
                    owner_rows = owner_layout(n, True)
                else:
                    raise ValueError(f"C = {n_c} is neither N nor N^2 (N = {n}): pass owner_rows")
            points = X[:, np.asarray(owner_rows, dtype=np.int64)][:, :, None]
        elif X.ndim == 3:
            points = X
            if (
                points.shape[1] == n_c
                and n_c > 1
                and np.array_equal(
                    points, np.broadcast_to(points[:, :1, :], points.shape), equal_nan=True
                )
            ):
                points = points[:, :1, :]  # the same points for all CWs (exchange): share weights
        else:
            raise ValueError("X must have shape (B, N) or (B, C, P)")
        if points.shape[0] != n_b or points.shape[1] not in (1, n_c):
            raise ValueError(f"points have shape {points.shape}, expected ({n_b}, {n_c} or 1, P)")
        n_s = int(self.n_stencil)
        if n_s % 2 or not 4 <= n_s <= 16 or n_s > self.n_x:
            raise ValueError(f"n_stencil must be even, 4 .. 16 and <= M, got {n_s}")
        shape = (n_b, n_c, points.shape[2])
        values = np.empty(shape, dtype=complex)
        d1 = np.empty(shape, dtype=complex)
        d2 = np.empty(shape, dtype=complex)
        K.stencil_eval_nb(
            np.ascontiguousarray(psi), np.ascontiguousarray(points), float(self.x[0]), self.dx,
            n_s, values, d1, d2,
        )  # fmt: skip
        if squeeze:
            return values[:, :, 0], d1[:, :, 0], d2[:, :, 0]
        return values, d1, d2
