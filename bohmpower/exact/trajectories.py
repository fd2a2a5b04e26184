"""Exact Bohmian trajectories guided by the exact N-electron grid wavefunction (atomic units).

The wavefunction ``psi`` lives on the full product grid, shape ``(n_x,)*N`` (axis k is electron k). A
world is one configuration X = (X_0, ..., X_{N-1}); an ensemble of W worlds is an array of shape (W, N).

Per step
--------
:class:`BohmianGuide` holds, for the current time, psi and its spectral derivatives d_k psi and
d_k^2 psi for every electron k, computed once per step (cost below), and evaluates them at off-grid
configurations by local tensor-product Lagrange interpolation (p points per axis, p even, periodic
wrap; numba kernel in ``_traj_kernels`` with a numpy twin). Ratios are formed only after interpolation:
THEORY.md section 4 asks to interpolate psi and its derivatives, never their ratio.

Cost of the grid derivatives: for each axis k one forward FFT along k and two inverse FFTs along k
(the first and second derivative share the forward transform). A batch of 1D transforms along one axis
costs 1/N of an N-d transform, so the whole set costs 3 N-d transforms, i.e. 1.5 FFT pairs per step
(the propagator itself uses 1 pair per step). The alternative of one forward N-d FFT followed by an
inverse N-d FFT for each of the 2N derivative fields costs 1 + 2N N-d transforms (N + 1/2 pairs) and gives
the same numbers: (i k_k) commutes with the transforms along the other axes, which therefore cancel.
In wall time (512^2, one thread) an update measures 2.3-3 FFT pairs with scipy.fft: batched 1D transforms
along the strided axis 0 run slower than the passes inside ``fftn``. With pyFFTW (``fft_backend``, the
propagator's library; plans made once on the guide's own buffers) the same update runs about 1.6x
faster. ``_bench()`` at the bottom measures it.

Per-electron quantities at a world X (THEORY.md sections 2, 3; hbar = 1)
-----------------------------------------------------------------------

.. math::

    v_k = \\frac{1}{m} \\mathrm{Im}\\frac{\\partial_k\\Psi}{\\Psi}, \\qquad
    Q_k = -\\frac{1}{2m}\\mathrm{Re}\\frac{\\partial_k^2\\Psi}{\\Psi} - \\frac{m v_k^2}{2},

    e_k = \\frac{m v_k^2}{2} + Q_k + U_0(X_k) + \\frac12\\sum_{j\\ne k} W(X_k - X_j)
          \\;[+\\, q\\phi(X_k, t) \\text{ when } \\chi = 1],

    F_{kj} = -W'(X_k - X_j), \\qquad
    c_k = \\frac12 \\sum_{j \\ne k} F_{kj} (v_k + v_j), \\qquad
    f_k = qE(X_k, t)\\, v_k \\;[\\chi = 1:\\; q\\,\\partial_t\\phi(X_k, t)].

U0 and the absorbing rate Gamma are taken on the grid (what the propagator uses) and interpolated with
the same stencil, U0' as the derivative of that same interpolant, so U0 and U0' are consistent even for
sharp pieces that have no analytic derivative; callables ``u0_fn``/``du0_fn`` may be given instead.
The drive (q phi, q E, q d_t phi) and the pair interaction (W, W') are taken as callables at off-grid
points: the model layer provides them analytically.

Integrator
----------
Heun's method (second order, matching the Strang propagator), with psi at t_n and t_{n+1}:

.. math::

    X^* = X_n + \\Delta t\\, v(X_n, t_n), \\qquad
    X_{n+1} = X_n + \\frac{\\Delta t}{2}\\left[v(X_n, t_n) + v(X^*, t_{n+1})\\right].

Weights (absorbing layers, THEORY.md section 6): w(t) = exp(-2 int_0^t Gamma_tot(X(t')) dt'), the
integral by the trapezoid rule on the steps. A world whose weight falls below ``WEIGHT_FLOOR`` or whose
position leaves the cell [x_min, x_max) is removed: weight 0 and NaN in every per-electron quantity from
then on.

Quantum force, two ways (THEORY.md section 5 item 7)
---------------------------------------------------
From the trajectory's own acceleration (central difference of its velocities, second order):

.. math::

    F^Q_k(t_n) = m \\frac{v_k(t_{n+1}) - v_k(t_{n-1})}{t_{n+1} - t_{n-1}} - qE(X_k, t_n) + U_0'(X_k)
                 - \\sum_{j\\ne k} F_{kj},

and independently -d_k Q with Q = sum_j Q_j computed on the grid (zero where rho < cutoff * max rho,
SPEC.md) and differentiated by the interpolation stencil.
"""

from __future__ import annotations

import logging
import time as _time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.fft as sfft

from bohmpower.exact.fftbackend import resolve_fft_backend
from bohmpower.model.grid import uniform_grid
from bohmpower.model.state import TrajectoryState

from . import _traj_kernels

__all__ = [
    "DENSITY_CUTOFF",
    "WEIGHT_FLOOR",
    "BohmianEnsemble",
    "BohmianGuide",
    "TrajectoryState",
    "advance",
    "interpolate",
    "quantum_force_from_acceleration",
    "run_trajectories",
]

logger = logging.getLogger(__name__)

#: A world whose weight falls below this is removed (THEORY.md section 6).
WEIGHT_FLOOR = 1e-12
#: Ratios by rho are set to 0 where rho < DENSITY_CUTOFF * max rho (SPEC.md).
DENSITY_CUTOFF = 1e-13

PositionFn = Callable[[np.ndarray], np.ndarray]
DriveFn = Callable[[np.ndarray, float], np.ndarray]




# ---------------------------------------------------------------------------------------- interpolation
def _check_grid(x: np.ndarray) -> tuple[float, float, int]:
    return uniform_grid(x)


def interpolate(
    fields: np.ndarray,
    x_min: float,
    dx: float,
    X: np.ndarray,
    order: int = 8,
    deriv_axis: int = -1,
    use_numba: bool = True,
) -> np.ndarray:
    """Local tensor-product Lagrange interpolation of grid fields at off-grid configurations.

    Parameters
    ----------
    fields : ndarray, shape (n_f,) + (n_x,)*N, float or complex
        ``n_f`` fields on the periodic product grid x_i = x_min + i dx (C-contiguous preferred).
    x_min, dx : float
        Grid origin and spacing [bohr].
    X : ndarray, shape (W, N)
        Configurations [bohr]; rows with a non-finite coordinate give NaN.
    order : int
        Points per axis p (even, 2 <= p <= n_x); the error is O(dx^p) for smooth fields.
    deriv_axis : int
        -1: values; a in 0..N-1: derivative along axis a of the interpolating polynomial
        [field units / bohr].
    use_numba : bool
        False runs the plain-numpy twin (tests).

    Returns
    -------
    ndarray, shape (W, n_f), dtype of ``fields``
    """
    fields = np.asarray(fields)
    X = np.ascontiguousarray(X, dtype=float)
    n_dim = fields.ndim - 1
    if X.ndim != 2 or X.shape[1] != n_dim:
        raise ValueError(f"X must have shape (W, {n_dim}), got {X.shape}")
    n_x = fields.shape[1]
    if any(s != n_x for s in fields.shape[1:]):
        raise ValueError(f"fields must have shape (n_f,) + (n_x,)*N, got {fields.shape}")
    order = int(order)
    if order < 2 or order % 2 or order > n_x:
        raise ValueError(f"order must be even, 2 <= order <= n_x = {n_x}, got {order}")
    if not -1 <= deriv_axis < n_dim:
        raise ValueError(f"deriv_axis must be -1 or 0..{n_dim - 1}, got {deriv_axis}")
    fields2d = np.ascontiguousarray(fields.reshape(fields.shape[0], -1))
    dtype = np.complex128 if np.iscomplexobj(fields2d) else np.float64
    fields2d = fields2d.astype(dtype, copy=False)
    out = np.empty((X.shape[0], fields2d.shape[0]), dtype=dtype)
    denom = _traj_kernels.lagrange_denominators(order)
    kernel = _traj_kernels.interp_nb if use_numba else _traj_kernels.interp_np
    kernel(fields2d, float(x_min), float(dx), n_x, X, order, int(deriv_axis), denom, out)
    return out


# ---------------------------------------------------------------------------------------- state record


# ---------------------------------------------------------------------------------------- the guide
class BohmianGuide:
    """psi and its per-electron derivatives at one time, evaluated at off-grid configurations.

    Parameters
    ----------
    x : ndarray, shape (n_x,)
        Uniform periodic 1D grid [bohr] (x_max = x_min + n_x dx is the image of x_min).
    mass : float
        Electron mass m [m_e].
    n_particles : int
        N (1 <= N; the grid memory grows like n_x**N).
    u0 : ndarray, shape (n_x,)
        Static potential on the grid [hartree]; interpolated (and differentiated) with the stencil
        unless ``u0_fn`` and ``du0_fn`` are given.
    gamma : ndarray, shape (n_x,), optional
        Absorbing rate Gamma(x) >= 0 on the grid [hartree]; interpolated, clipped at 0.
    w, dw : callable, optional
        Pair interaction W(r) [hartree] and W'(r) [hartree/bohr], vectorised over r [bohr]; both or
        neither.
    drive_potential_fn, drive_force_fn : callable (x, t) -> array of x's shape, optional
        q phi(x, t) [hartree] and q E(x, t) [hartree/bohr] at arbitrary positions; None means no drive.
    drive_potential_dt_fn : callable (x, t), optional
        q d_t phi(x, t) [hartree / a.u. time]; needed for chi = 1 when there is a drive.
    include_drive_potential : bool
        chi of THEORY.md (q phi inside e_k; field_power becomes q d_t phi).
    u0_fn, du0_fn : callable (x) -> array, optional
        U0 and U0' at arbitrary positions, used instead of interpolating ``u0``.
    order : int
        Interpolation points per axis (even).
    density_cutoff : float
        Q on the grid is set to 0 where rho < density_cutoff * max rho.
    quantum_force : bool
        Also compute Q = sum_k Q_k on the grid at each update, for :meth:`quantum_force_grid`
        (one more real N-d array and a few temporaries).
    workers : int
        FFT threads.
    fft_backend : {"auto", "scipy", "pyfftw"}
        FFT library for the grid derivatives. ``"auto"`` uses pyFFTW when it is installed, as the
        propagator does (measured 1.6x faster per update than scipy.fft, 512^2, one thread); the
        two agree to round-off.

    Notes
    -----
    Memory: (1 + 2N) complex N-d arrays (psi, d_k psi, d_k^2 psi), plus one real array with
    ``quantum_force``. An update costs 3 N-d FFT-equivalents (see the module notes).
    """

    def __init__(
        self,
        x: np.ndarray,
        mass: float,
        n_particles: int,
        u0: np.ndarray,
        *,
        gamma: np.ndarray | None = None,
        w: PositionFn | None = None,
        dw: PositionFn | None = None,
        drive_potential_fn: DriveFn | None = None,
        drive_force_fn: DriveFn | None = None,
        drive_potential_dt_fn: DriveFn | None = None,
        include_drive_potential: bool = False,
        u0_fn: PositionFn | None = None,
        du0_fn: PositionFn | None = None,
        order: int = 8,
        density_cutoff: float = DENSITY_CUTOFF,
        quantum_force: bool = False,
        workers: int = 1,
        fft_backend: str = "auto",
    ) -> None:
        self.x_min, self.dx, self.n_x = _check_grid(x)
        self.x = np.asarray(x, dtype=float)
        self.x_max = self.x_min + self.n_x * self.dx
        if not mass > 0:
            raise ValueError(f"mass must be > 0, got {mass}")
        self.mass = float(mass)
        self.n_particles = int(n_particles)
        if self.n_particles < 1:
            raise ValueError(f"n_particles must be >= 1, got {n_particles}")
        order = int(order)
        if order < 2 or order % 2 or order > self.n_x:
            raise ValueError(f"order must be even, 2 <= order <= n_x = {self.n_x}, got {order}")
        self.order = order
        self.u0 = np.asarray(u0, dtype=float)
        if self.u0.shape != (self.n_x,):
            raise ValueError(f"u0 has shape {self.u0.shape}, expected ({self.n_x},)")
        if (u0_fn is None) != (du0_fn is None):
            raise ValueError("give both u0_fn and du0_fn, or neither")
        self.u0_fn, self.du0_fn = u0_fn, du0_fn
        if gamma is not None:
            gamma = np.asarray(gamma, dtype=float)
            if gamma.shape != (self.n_x,):
                raise ValueError(f"gamma has shape {gamma.shape}, expected ({self.n_x},)")
            if not np.any(gamma > 0):
                gamma = None
        self.gamma = gamma
        if (w is None) != (dw is None):
            raise ValueError("give both w and dw (W and W'), or neither")
        self.w, self.dw = w, dw
        self.drive_potential_fn = drive_potential_fn
        self.drive_force_fn = drive_force_fn
        self.drive_potential_dt_fn = drive_potential_dt_fn
        self.include_drive_potential = bool(include_drive_potential)
        if (
            self.include_drive_potential
            and drive_force_fn is not None
            and (drive_potential_fn is None or drive_potential_dt_fn is None)
        ):
            raise ValueError(
                "include_drive_potential needs drive_potential_fn and drive_potential_dt_fn"
            )
        self.density_cutoff = float(density_cutoff)
        self.quantum_force = bool(quantum_force)
        self.workers = int(workers)
        self.kx = 2.0 * np.pi * np.fft.fftfreq(self.n_x, d=self.dx)
        # First derivative: the Nyquist mode (even n_x) is a real cosine whose derivative the grid cannot
        # hold; zero it as hamiltonian.d_axis does, so a real psi keeps a real derivative.
        k1 = 1j * self.kx
        if self.n_x % 2 == 0:
            k1[self.n_x // 2] = 0.0
        self._k1 = k1
        self._k2 = -(self.kx**2) + 0j
        self.fft_backend = resolve_fft_backend(fft_backend)
        self._k1n = self._k1 / self.n_x  # pyFFTW's inverse is unnormalised
        self._k2n = self._k2 / self.n_x
        self._plans: list | None = None
        self._c: np.ndarray | None = None
        self.shape = (self.n_x,) * self.n_particles
        self.t: float | None = None
        self._fields: np.ndarray | None = None
        self._q: np.ndarray | None = None
        self._denom = _traj_kernels.lagrange_denominators(order)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_model(
        cls,
        model,
        *,
        order: int = 8,
        quantum_force: bool = False,
        workers: int = 1,
        fft_backend: str = "auto",
    ) -> BohmianGuide:
        """Build from a :class:`bohmpower.model.Model` (docs/design.md names).

        Uses ``grid.x``, ``mass``, ``n_particles``, ``u0`` (interpolated), ``gamma`` (interpolated),
        ``interaction.w/dw``, each drive's analytic ``potential(x)``, ``force(x)``, ``profile(t)``,
        ``profile_dt(t)``, ``include_drive_potential`` and ``config.numerics.density_cutoff`` if present.
        """
        drives = tuple(getattr(model, "drives", ()) or ())
        inter = getattr(model, "interaction", None)
        w = dw = None
        if inter is not None and getattr(inter, "kind", "none") != "none":
            w, dw = inter.w, inter.dw
        pot = force = pot_dt = None
        if drives:

            def pot(xx: np.ndarray, t: float) -> np.ndarray:
                return sum(float(d.profile(t)) * np.asarray(d.potential(xx)) for d in drives)

            def force(xx: np.ndarray, t: float) -> np.ndarray:
                return sum(float(d.profile(t)) * np.asarray(d.force(xx)) for d in drives)

            def pot_dt(xx: np.ndarray, t: float) -> np.ndarray:
                return sum(float(d.profile_dt(t)) * np.asarray(d.potential(xx)) for d in drives)

        cutoff = DENSITY_CUTOFF
        numerics = getattr(getattr(model, "config", None), "numerics", None)
        if numerics is not None and getattr(numerics, "density_cutoff", None) is not None:
            cutoff = float(numerics.density_cutoff)
        return cls(
            model.grid.x,
            model.mass,
            model.n_particles,
            model.u0,
            gamma=getattr(model, "gamma", None),
            w=w,
            dw=dw,
            drive_potential_fn=pot,
            drive_force_fn=force,
            drive_potential_dt_fn=pot_dt,
            include_drive_potential=bool(getattr(model, "include_drive_potential", False)),
            order=order,
            density_cutoff=cutoff,
            quantum_force=quantum_force,
            workers=workers,
            fft_backend=fft_backend,
        )

    @classmethod
    def from_propagator(
        cls,
        propagator,
        *,
        dw: PositionFn | None = None,
        order: int = 8,
        quantum_force: bool = False,
    ) -> BohmianGuide:
        """Build from a :class:`bohmpower.exact.propagator.SplitOperator` (chi = 0).

        The drive is known there only on the grid (shapes g_i and profiles f_i), so q phi and
        q E = -sum_i f_i g_i' are interpolated with the stencil. W' is taken from ``dw`` or, when the
        propagator's ``w`` is a bound method of an object with a ``dw`` method (model.Interaction), from
        that object.
        """
        w = propagator.w
        if w is not None and dw is None:
            dw = getattr(getattr(w, "__self__", None), "dw", None)
            if dw is None:
                raise ValueError("the propagator has an interaction: give dw (W'(r))")
        x = np.asarray(propagator.x, dtype=float)
        shapes = np.asarray(propagator.drive_shapes, dtype=float)
        profiles = tuple(propagator.profiles)
        pot = force = None
        if len(profiles):
            x_min, dx, _ = _check_grid(x)

            def pot(xx: np.ndarray, t: float) -> np.ndarray:
                xx = np.asarray(xx, dtype=float)
                f = np.array([float(p(t)) for p in profiles])
                vals = interpolate(shapes, x_min, dx, xx.reshape(-1, 1), order)
                return (vals @ f).reshape(xx.shape)

            def force(xx: np.ndarray, t: float) -> np.ndarray:
                xx = np.asarray(xx, dtype=float)
                f = np.array([float(p(t)) for p in profiles])
                vals = interpolate(shapes, x_min, dx, xx.reshape(-1, 1), order, deriv_axis=0)
                return -(vals @ f).reshape(xx.shape)

        return cls(
            x,
            propagator.mass,
            propagator.n_particles,
            propagator.u0,
            gamma=propagator.gamma,
            w=w,
            dw=dw,
            drive_potential_fn=pot,
            drive_force_fn=force,
            order=order,
            quantum_force=quantum_force,
            workers=propagator.workers,
            fft_backend=getattr(propagator, "fft_backend", "auto"),
        )

    # ------------------------------------------------------------------ per step
    def update(self, psi: np.ndarray, t: float) -> None:
        """Take psi at time t and compute d_k psi, d_k^2 psi (and Q if requested) on the grid.

        Parameters
        ----------
        psi : ndarray, complex, shape (n_x,)*N
            The wavefunction at ``t`` (not modified; copied into the guide's buffer).
        t : float
            Time [a.u. time].
        """
        if psi.shape != self.shape:
            raise ValueError(f"psi has shape {psi.shape}, expected {self.shape}")
        if self.fft_backend == "pyfftw":
            self._update_fftw(psi)
        else:
            self._update_scipy(psi)
        if self.quantum_force:
            self._q = self._grid_quantum_potential()
        self.t = float(t)

    def _update_scipy(self, psi: np.ndarray) -> None:
        n = self.n_particles
        if self._fields is None:
            self._fields = np.empty((1 + 2 * n,) + self.shape, dtype=np.complex128)
        f = self._fields
        f[0] = psi
        for k in range(n):
            shp = [1] * n
            shp[k] = self.n_x
            c = sfft.fft(psi, axis=k, workers=self.workers)
            # Multiply straight into the (contiguous) destination slabs and transform them in place:
            # no N-d temporaries beyond c.
            for dest, factor in ((f[1 + k], self._k1), (f[1 + n + k], self._k2)):
                np.multiply(c, factor.reshape(shp), out=dest)
                res = sfft.ifft(dest, axis=k, overwrite_x=True, workers=self.workers)
                if res.ctypes.data != dest.ctypes.data:
                    dest[...] = res  # scipy may decline to work in place

    def _update_fftw(self, psi: np.ndarray) -> None:
        """The same transforms with pyFFTW plans on the guide's own aligned buffers.

        Plans (FFTW_MEASURE, which overwrites the arrays it plans on) are made once, on the
        buffers before they hold data: for each axis k a forward transform psi -> c along k and
        two in-place inverse transforms along k of the d_k psi and d_k^2 psi slabs. The inverse is
        unnormalised; the 1/n_x is folded into the wavenumber factors.
        """
        n = self.n_particles
        if self._plans is None:
            import pyfftw

            fields = pyfftw.empty_aligned((1 + 2 * n,) + self.shape, dtype=np.complex128)
            c = pyfftw.empty_aligned(self.shape, dtype=np.complex128)
            common = {"flags": ("FFTW_MEASURE",), "threads": self.workers}
            plans = []
            for k in range(n):
                forward = pyfftw.FFTW(fields[0], c, axes=(k,), direction="FFTW_FORWARD", **common)
                inverse = [
                    pyfftw.FFTW(
                        fields[j],
                        fields[j],
                        axes=(k,),
                        direction="FFTW_BACKWARD",
                        normalise_idft=False,
                        **common,
                    )
                    for j in (1 + k, 1 + n + k)
                ]
                plans.append((forward, inverse))
            self._fields, self._c, self._plans = fields, c, plans
        f, c = self._fields, self._c
        f[0] = psi
        for k, (forward, (inv1, inv2)) in enumerate(self._plans):
            shp = [1] * n
            shp[k] = self.n_x
            forward.execute()
            np.multiply(c, self._k1n.reshape(shp), out=f[1 + k])
            inv1.execute()
            np.multiply(c, self._k2n.reshape(shp), out=f[1 + n + k])
            inv2.execute()

    def _grid_quantum_potential(self) -> np.ndarray:
        """Q = sum_k Q_k on the grid, 0 where rho < cutoff * max rho, shape (n_x,)*N [hartree]."""
        f = self._fields
        n = self.n_particles
        psi = f[0]
        rho = psi.real**2 + psi.imag**2
        mask = rho >= self.density_cutoff * rho.max()
        inv = np.zeros_like(rho)
        np.divide(1.0, rho, out=inv, where=mask)
        q = np.zeros_like(rho)
        pc = psi.conj()
        for k in range(n):
            # Q_k = -(1/2m) [Re(psi* d2 psi)/rho + (Im(psi* d psi)/rho)^2]: the complex-ratio form
            # (THEORY.md), never derivatives of |psi|.
            a = (pc * f[1 + k]).imag * inv
            b = (pc * f[1 + n + k]).real * inv
            q -= (b + a * a) / (2.0 * self.mass)
        return q

    def _require(self) -> np.ndarray:
        if self._fields is None:
            raise RuntimeError("BohmianGuide.update(psi, t) must be called first")
        return self._fields

    def interpolate_fields(self, X: np.ndarray, n_fields: int | None = None) -> np.ndarray:
        """psi, d_k psi, d_k^2 psi at the configurations X.

        Parameters
        ----------
        X : ndarray, shape (W, N)
            Configurations [bohr].
        n_fields : int, optional
            Only the first ``n_fields`` of (psi, d_0 psi, ..., d_{N-1} psi, d_0^2 psi, ...); default all.

        Returns
        -------
        ndarray, complex, shape (W, n_fields)
        """
        f = self._require()
        n_f = f.shape[0] if n_fields is None else int(n_fields)
        return interpolate(f[:n_f], self.x_min, self.dx, X, self.order)

    def velocity(self, X: np.ndarray) -> np.ndarray:
        """v_k(X, t) = (1/m) Im(d_k psi / psi), shape (W, N) [bohr / a.u. time]."""
        vals = self.interpolate_fields(X, 1 + self.n_particles)
        return (vals[:, 1:] / vals[:, :1]).imag / self.mass

    def _one_body(self, X: np.ndarray, table: np.ndarray, deriv: bool) -> np.ndarray:
        vals = interpolate(
            table[None, :],
            self.x_min,
            self.dx,
            X.reshape(-1, 1),
            self.order,
            deriv_axis=0 if deriv else -1,
        )
        return vals.reshape(X.shape)

    def u0_at(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """U0(X) [hartree] and U0'(X) [hartree/bohr], each of X's shape."""
        X = np.asarray(X, dtype=float)
        if self.u0_fn is not None:
            return np.asarray(self.u0_fn(X), dtype=float), np.asarray(self.du0_fn(X), dtype=float)
        return self._one_body(X, self.u0, False), self._one_body(X, self.u0, True)

    def gamma_at(self, X: np.ndarray) -> np.ndarray:
        """Gamma(X) >= 0 [hartree], X's shape (zeros without absorbing layers)."""
        X = np.asarray(X, dtype=float)
        if self.gamma is None:
            return np.zeros(X.shape)
        # The stencil may overshoot slightly below 0 at the layer's onset; a rate is never negative.
        return np.maximum(self._one_body(X, self.gamma, False), 0.0)

    def quantum_force_grid(self, X: np.ndarray) -> np.ndarray:
        """-d_k Q at X, Q = sum_j Q_j from the grid, by the stencil's derivative, shape (W, N) [hartree/bohr]."""
        if not self.quantum_force:
            raise RuntimeError("build the guide with quantum_force=True")
        self._require()
        X = np.asarray(X, dtype=float)
        out = np.empty(X.shape)
        q = self._q[None]
        for k in range(self.n_particles):
            out[:, k] = -interpolate(q, self.x_min, self.dx, X, self.order, deriv_axis=k)[:, 0]
        return out

    def evaluate(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Every per-electron quantity at the configurations X at the guide's time.

        Parameters
        ----------
        X : ndarray, shape (W, N)
            Configurations [bohr].

        Returns
        -------
        dict of ndarray
            ``v, e, Q, field_force, field_power, pair_force, pair_power, du0`` (W, N) and
            ``gamma_total`` (W,), as in :class:`TrajectoryState`; ``quantum_force_grid`` (W, N) when the
            guide computes Q.
        """
        X = np.asarray(X, dtype=float)
        n, m, t = self.n_particles, self.mass, self.t
        vals = self.interpolate_fields(X)
        psi = vals[:, :1]
        r1 = vals[:, 1 : 1 + n] / psi
        r2 = vals[:, 1 + n :] / psi
        v = r1.imag / m
        kinetic = -r2.real / (2.0 * m)  # = m v^2/2 + Q_k
        Q = kinetic - 0.5 * m * v * v
        u0, du0 = self.u0_at(X)
        e = kinetic + u0
        pair_force = np.zeros_like(X)
        pair_power = np.zeros_like(X)
        if self.w is not None and n > 1:
            r = X[:, :, None] - X[:, None, :]  # r[w, k, j] = X_k - X_j
            off = ~np.eye(n, dtype=bool)
            e = e + 0.5 * np.sum(np.where(off, self.w(r), 0.0), axis=2)
            F = np.where(off, -self.dw(r), 0.0)  # F_kj
            pair_force = F.sum(axis=2)
            pair_power = 0.5 * np.sum(F * (v[:, :, None] + v[:, None, :]), axis=2)
        if self.drive_force_fn is not None:
            field_force = np.asarray(self.drive_force_fn(X, t), dtype=float)
        else:
            field_force = np.zeros_like(X)
        if self.include_drive_potential and self.drive_force_fn is not None:
            e = e + np.asarray(self.drive_potential_fn(X, t), dtype=float)
            field_power = np.asarray(self.drive_potential_dt_fn(X, t), dtype=float)
        else:
            field_power = field_force * v
        out = {
            "v": v,
            "e": e,
            "Q": Q,
            "field_force": field_force,
            "field_power": field_power,
            "pair_force": pair_force,
            "pair_power": pair_power,
            "du0": du0,
            "gamma_total": self.gamma_at(X).sum(axis=1),
        }
        if self.quantum_force:
            out["quantum_force_grid"] = self.quantum_force_grid(X)
        return out


# ---------------------------------------------------------------------------------------- integrator
def advance(
    X: np.ndarray,
    guide_n: BohmianGuide | None,
    guide_n1: BohmianGuide,
    dt: float,
    v_n: np.ndarray | None = None,
) -> np.ndarray:
    """One Heun step of the guidance equation from t_n to t_{n+1} = t_n + dt.

    Parameters
    ----------
    X : ndarray, shape (W, N)
        Positions at t_n [bohr].
    guide_n : BohmianGuide or None
        Guide updated with psi(t_n); may be None when ``v_n`` is given.
    guide_n1 : BohmianGuide
        Guide updated with psi(t_{n+1}).
    dt : float
        Step [a.u. time]; must equal t_{n+1} - t_n of the guides.
    v_n : ndarray, shape (W, N), optional
        v(X, t_n) if already known (it is, from the previous step's evaluation).

    Returns
    -------
    ndarray, shape (W, N)
        X_{n+1} [bohr].

    Notes
    -----
    X* = X + dt v(X, t_n);  X_{n+1} = X + (dt/2) [v(X, t_n) + v(X*, t_{n+1})]: second order.
    """
    X = np.asarray(X, dtype=float)
    if v_n is None:
        if guide_n is None:
            raise ValueError("give guide_n or v_n")
        v_n = guide_n.velocity(X)
    if (
        guide_n is not None
        and guide_n.t is not None
        and guide_n1.t is not None
        and abs((guide_n1.t - guide_n.t) - dt) > 1e-9 * max(abs(dt), 1.0)
    ):
        raise ValueError(f"dt={dt} but the guides are {guide_n1.t - guide_n.t} apart")
    x_star = X + dt * v_n
    v_star = guide_n1.velocity(x_star)
    return X + 0.5 * dt * (v_n + v_star)


def quantum_force_from_acceleration(
    v_prev: np.ndarray,
    v_next: np.ndarray,
    dt2: float,
    mass: float,
    field_force: np.ndarray,
    du0: np.ndarray,
    pair_force: np.ndarray,
) -> np.ndarray:
    """F^Q_k = m dv_k/dt - q E(X_k) + U0'(X_k) - sum_{j != k} F_kj, dv/dt by a central difference.

    Parameters
    ----------
    v_prev, v_next : ndarray, shape (W, N)
        Velocities at t_{n-1} and t_{n+1} [bohr / a.u. time].
    dt2 : float
        t_{n+1} - t_{n-1} [a.u. time].
    mass : float
        [m_e]
    field_force, du0, pair_force : ndarray, shape (W, N)
        q E(X_k, t_n), U0'(X_k), sum_j F_kj at t_n [hartree/bohr].

    Returns
    -------
    ndarray, shape (W, N)
        F^Q_k(t_n) [hartree/bohr], second order in the step.
    """
    return mass * (v_next - v_prev) / dt2 - field_force + du0 - pair_force


_STATE_KEYS = ("v", "e", "Q", "field_force", "field_power", "pair_force", "pair_power", "du0")


class BohmianEnsemble:
    """W worlds of N electrons moved by one :class:`BohmianGuide` (Heun), with weights and removal.

    Parameters
    ----------
    guide : BohmianGuide
        Already updated with psi at the initial time.
    X0 : ndarray, shape (W, N)
        Initial positions [bohr] (e.g. drawn from |Psi0|^2 by model.sampling).
    weight0 : ndarray, shape (W,), optional
        Initial weights (default 1).

    Notes
    -----
    The run loop propagates psi one step, calls ``guide.update(psi, t)`` and then :meth:`step`; the
    guide is overwritten in place, so only one set of grid derivatives is held: the velocity at t_n
    that Heun's predictor needs is kept from the previous evaluation. ``state`` is the current
    :class:`TrajectoryState`; ``previous`` the one before.
    """

    def __init__(
        self, guide: BohmianGuide, X0: np.ndarray, weight0: np.ndarray | None = None,
        units: Any = None,
    ) -> None:
        from bohmpower.units import ATOMIC

        #: unit system of the run file, for log lines (`bohmpower.units.UnitSystem`)
        self.units = ATOMIC if units is None else units
        X0 = np.array(X0, dtype=float)
        if X0.ndim != 2 or X0.shape[1] != guide.n_particles:
            raise ValueError(f"X0 must have shape (W, {guide.n_particles}), got {X0.shape}")
        if guide.t is None:
            raise RuntimeError("update the guide with psi at the initial time first")
        self.guide = guide
        n_w = X0.shape[0]
        w0 = np.ones(n_w) if weight0 is None else np.array(weight0, dtype=float)
        if w0.shape != (n_w,) or np.any(w0 < 0):
            raise ValueError("weight0 must have shape (W,) and be >= 0")
        with np.errstate(divide="ignore"):
            self.log_weight = np.log(w0)
        self.previous: TrajectoryState | None = None
        self.state = self._build_state(X0, guide, np.isfinite(self.log_weight))
        self.n_removed = int(np.sum(~self.state.alive))

    @property
    def t(self) -> float:
        return self.state.t

    def _build_state(
        self, X: np.ndarray, guide: BohmianGuide, alive: np.ndarray
    ) -> TrajectoryState:
        n_w, n = X.shape
        # Removed: already dead, outside the cell, non-finite, or weight below the floor.
        inside = np.all((X >= guide.x_min) & (X < guide.x_max), axis=1)
        alive = alive & inside & (self.log_weight >= np.log(WEIGHT_FLOOR))
        vals = {k: np.full((n_w, n), np.nan) for k in _STATE_KEYS}
        gamma_total = np.zeros(n_w)
        qf = np.full((n_w, n), np.nan) if guide.quantum_force else None
        if np.any(alive):
            ev = guide.evaluate(X[alive])
            for k in _STATE_KEYS:
                vals[k][alive] = ev[k]
            gamma_total[alive] = ev["gamma_total"]
            if qf is not None:
                qf[alive] = ev["quantum_force_grid"]
        Xs = np.where(alive[:, None], X, np.nan)
        self.log_weight = np.where(alive, self.log_weight, -np.inf)
        weight = np.where(alive, np.exp(self.log_weight), 0.0)
        return TrajectoryState(
            t=guide.t, X=Xs, gamma_total=gamma_total, weight=weight, quantum_force_grid=qf, **vals
        )

    def step(self, guide: BohmianGuide | None = None) -> TrajectoryState:
        """Advance every live world to the guide's (new) time.

        Parameters
        ----------
        guide : BohmianGuide, optional
            Updated with psi(t_{n+1}); default the ensemble's own guide.

        Returns
        -------
        TrajectoryState
            The state at t_{n+1} (also ``self.state``).
        """
        guide = self.guide if guide is None else guide
        old = self.state
        dt = guide.t - old.t
        if not dt > 0:
            raise ValueError(f"the guide's time {guide.t} is not after the ensemble's {old.t}")
        alive = old.alive
        X_new = np.full_like(old.X, np.nan)
        if np.any(alive):
            X_new[alive] = advance(old.X[alive], None, guide, dt, v_n=old.v[alive])
        # Gamma_tot at t_{n+1} before the removal test (trapezoid over the step).
        g_new = np.zeros(alive.shape)
        if guide.gamma is not None and np.any(alive):
            inside = alive & np.all((X_new >= guide.x_min) & (X_new < guide.x_max), axis=1)
            g_new[inside] = guide.gamma_at(X_new[inside]).sum(axis=1)
        self.log_weight = np.where(alive, self.log_weight - dt * (old.gamma_total + g_new), -np.inf)
        self.previous = old
        self.state = self._build_state(X_new, guide, alive)
        removed = int(np.sum(alive & ~self.state.alive))
        if removed:
            logger.debug("t = %s: %d world(s) removed (absorbed or left the grid)",
                         self.units.quantity(guide.t, "time"), removed)
            self.n_removed += removed
        return self.state


# ---------------------------------------------------------------------------------------- driver
StepCallback = Callable[..., None]


def run_trajectories(
    propagator,
    psi0: np.ndarray,
    X0: np.ndarray,
    n_steps: int,
    dt: float,
    callback: StepCallback | None = None,
    *,
    guide: BohmianGuide | None = None,
    t0: float = 0.0,
    on_step: Callable[[int, TrajectoryState], None] | None = None,
) -> tuple[np.ndarray, BohmianEnsemble]:
    """Propagate psi one step at a time and move the worlds with it.

    Parameters
    ----------
    propagator : SplitOperator
        Its ``dt`` must equal ``dt``; ``advance(psi, t, 1)`` is called once per step.
    psi0 : ndarray, complex, shape (n_x,)*N
        Initial wavefunction (copied, not modified).
    X0 : ndarray, shape (W, N)
        Initial positions [bohr].
    n_steps : int
        Number of steps.
    dt : float
        Step [a.u. time].
    callback : callable, optional
        ``callback(step, t, X, v, e, Q, field_force, pair_power, weight)`` at steps 0..n_steps
        (arrays as in :class:`TrajectoryState`).
    guide : BohmianGuide, optional
        Default :meth:`BohmianGuide.from_propagator` (chi = 0; drive interpolated from the grid).
    t0 : float
        Initial time.
    on_step : callable, optional
        ``on_step(step, state)`` with the full :class:`TrajectoryState` (field_power, gamma_total, ...).

    Returns
    -------
    psi : ndarray
        The wavefunction at t0 + n_steps dt.
    ensemble : BohmianEnsemble
        The ensemble at the final step (``ensemble.state``).
    """
    if abs(float(propagator.dt) - float(dt)) > 1e-12 * abs(dt):
        raise ValueError(f"dt={dt} differs from the propagator's dt={propagator.dt}")
    psi = np.array(psi0, dtype=np.complex128, order="C", copy=True)
    if guide is None:
        guide = BohmianGuide.from_propagator(propagator)
    t = float(t0)
    guide.update(psi, t)
    ens = BohmianEnsemble(guide, X0)

    def emit(step: int, s: TrajectoryState) -> None:
        if callback is not None:
            callback(step, s.t, s.X, s.v, s.e, s.Q, s.field_force, s.pair_power, s.weight)
        if on_step is not None:
            on_step(step, s)

    emit(0, ens.state)
    for step in range(1, int(n_steps) + 1):
        t = propagator.advance(psi, t, 1)
        guide.update(psi, t)
        emit(step, ens.step(guide))
    return psi, ens


# ---------------------------------------------------------------------------------------- benchmark
def _bench(
    n_x: int = 512,
    n_particles: int = 2,
    n_worlds: int = 1000,
    n_steps: int = 10,
    order: int = 8,
    repeats: int = 3,
    seed: int = 1,
) -> dict[str, float]:
    """Time trajectory steps: grid derivatives (guide.update) vs per-world work (Heun + evaluation).

    Call ``python -c "from bohmpower.exact.trajectories import _bench; print(_bench())"`` with
    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 (SPEC.md benchmark rules). N soft-Coulomb electrons in a
    weak harmonic well, started from a product of moving packets (the cost depends on the grid shape
    and the number of worlds, not on the state), worlds spread over the packets. Times are minima over
    ``repeats`` runs of ``n_steps`` steps, after a warm-up step that compiles (or loads from the cache)
    the kernels, reported separately as ``compile``.

    Returns
    -------
    dict
        seconds per step for ``grid_derivatives``, ``per_world`` (interpolation and per-electron
        quantities, all worlds), ``propagator``; ``fft_pair_floor`` (one in-place fftn + ifftn of the
        same shape, one thread, min of 5); ``compile`` seconds; ``trajectory_steps_per_s`` (worlds x
        steps per second of guide + per-world work, propagator excluded); ``derivatives_in_fft_pairs``.
    """
    from bohmpower.exact.propagator import SplitOperator

    rng = np.random.default_rng(seed)
    L = 80.0
    x = -L / 2 + np.arange(n_x) * (L / n_x)
    mass = 1.0
    u0 = 0.5 * 0.01 * x**2

    def w(r):
        return 1.0 / np.sqrt(r * r + 1.0)

    def dw(r):
        return -r / (r * r + 1.0) ** 1.5

    orb = [np.exp(-((x - c) ** 2) / 8.0 + 1j * k * x) for c, k in ((-5.0, 0.5), (5.0, -0.5))]
    orb = orb[:n_particles] + [np.exp(-((x - 3.0 * i) ** 2) / 8.0) for i in range(n_particles - 2)]
    psi = np.ones((n_x,) * n_particles, dtype=complex)
    for k, o in enumerate(orb):
        shp = [1] * n_particles
        shp[k] = n_x
        psi = psi * o.reshape(shp)
    psi /= np.sqrt(np.sum(np.abs(psi) ** 2) * (L / n_x) ** n_particles)
    dt = 0.01
    prop = SplitOperator(x, mass, n_particles, u0, None, w, None, None, dt)
    guide = BohmianGuide(x, mass, n_particles, u0, w=w, dw=dw, order=order)
    centres = np.array([-5.0, 5.0, 0.0, 3.0][:n_particles])
    X0 = centres + 2.0 * rng.standard_normal((n_worlds, n_particles))

    t_c = _time.perf_counter()
    guide.update(psi, 0.0)
    ens = BohmianEnsemble(guide, X0)
    prop.advance(psi, 0.0, 1)
    guide.update(psi, dt)
    ens.step(guide)
    compile_s = _time.perf_counter() - t_c

    t = dt
    best = {"grid_derivatives": np.inf, "per_world": np.inf, "propagator": np.inf}
    for _ in range(repeats):
        tot = dict.fromkeys(best, 0.0)
        for _ in range(n_steps):
            a = _time.perf_counter()
            t = prop.advance(psi, t, 1)
            b = _time.perf_counter()
            guide.update(psi, t)
            c = _time.perf_counter()
            ens.step(guide)
            d = _time.perf_counter()
            tot["propagator"] += b - a
            tot["grid_derivatives"] += c - b
            tot["per_world"] += d - c
        best = {k: min(b, tot[k] / n_steps) for k, b in best.items()}

    floor = np.inf
    buf = np.array(psi)
    for _ in range(5):
        a = _time.perf_counter()
        sfft.fftn(buf, overwrite_x=True, workers=1)
        sfft.ifftn(buf, overwrite_x=True, workers=1)
        floor = min(floor, _time.perf_counter() - a)
    per_step = best["grid_derivatives"] + best["per_world"]
    out = dict(best)
    out.update(
        fft_pair_floor=floor,
        derivatives_in_fft_pairs=best["grid_derivatives"] / floor,
        compile=compile_s,
        trajectory_steps_per_s=n_worlds / per_step,
        n_x=n_x,
        n_particles=n_particles,
        n_worlds=n_worlds,
        order=order,
        alive=int(np.sum(ens.state.alive)),
    )
    logger.info("trajectory benchmark: %s", out)
    return out
