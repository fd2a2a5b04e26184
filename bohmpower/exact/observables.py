"""Grid observables of the exact solver: local energy, local power and its five terms (atomic units).

Everything here is computed from one wavefunction Psi at one time, without time differencing
(THEORY.md sections 2, 3, 5, 6; docs/design.md). Atomic units, q = -1, hbar = 1, mass m.

Conventions
-----------
``psi`` has shape (n_x,)*N, axis k is electron k, and sum |psi|^2 dx^N = norm. Volume values are
floats, fields are 1D arrays on the original grid, see :class:`Frame`.

Notes
-----
**Hamiltonians.** With the interaction shared half-half (THEORY.md section 2),

    h_k   = -(1/2m) d_k^2 + U0(x_k) + (1/2) sum_{j != k} W(x_k - x_j)  [+ chi q phi(x_k, t)]
    H     = sum_k [-(1/2m) d_k^2 + U0(x_k) + q phi(x_k, t)] + sum_{j<k} W(x_j - x_k)   (Hermitian)
    H_eff = H - i Gamma_tot,   Gamma_tot = sum_j Gamma(x_j),

so sum_k h_k = H_int (chi = 0) or H (chi = 1), and i d_t Psi = H_eff Psi. Phi = H_eff Psi is formed on
the grid with :func:`bohmpower.exact.hamiltonian.apply_hamiltonian`, i.e. with exactly the operator the
propagator uses, so d_t Psi = -i Phi is the true time derivative of the grid state.

**Marginals.** The marginal of an N-d density g along electron k is
f_k(x) = integral dx^N delta(x - x_k) g, and every density below is summed over k. For identical fermions
Psi(..x_j..x_k..) = -Psi(..x_k..x_j..) and every density is a product of Psi* and Psi (or of
derivatives that permute with the labels), so swapping the labels k <-> 0 maps the k-th density onto the
0-th one with the coordinates swapped, and the marginals coincide: f_k = f_0 exactly, and we compute
k = 0 and multiply by N. Distinguishable electrons sum all k.

**Alias-free marginals.** Each density is a product of two band-limited factors A* B. Along axis k such
a product has modes |q| <= n_x - 1, so it is represented exactly on the grid refined 2x along axis k:
the factors are zero-padded in Fourier space along k only and multiplied on the fine points
y_i = x_min + i dx/2. Along every other axis the product's modes stay inside the rectangle rule's exact
range (|q| < n_x), so the plain grid sum over those axes is the exact integral. (The Nyquist
coefficient, for even n_x, is read as a cosine so that a real Psi stays real and carries no current; its
square is the one product the grid sum sees aliased, an O(|c_N|^2) effect that vanishes on a resolved
grid.) Potentials are
evaluated directly on the fine points (U0, Gamma, the drive shapes and W, W' at the fine x_k; at the
grid points for the other electrons). The fine marginals are what :mod:`bohmpower.model.volume`
integrates; the fields reported are their values at the original points (every other fine point).

**Implementation** (cost per call ~4 propagation steps for N = 2, 3; SPEC.md "Benchmarks"). Psi is
copied with axis k moved last ("X layout", contiguous along k). The fine points along k are the grid
points (even) and the midpoints (odd): a factor's values at the grid points are X, Phi and their
spectral derivatives, and at the midpoints the n-point inverse FFT of its coefficients times the half-step
shift exp(i k dx/2) -- the same numbers as the zero-padded 2n-point interpolation, at half the cost.
Phi = H_eff X is built as the potential term (static N-d V and Gamma_tot cached, drive added per axis)
plus the kinetic terms of the other axes, plus the kinetic term along k inside the slab loop, sharing
the forward FFT along k. The products and the sums over the other electrons are fused in one numba
kernel per slab and parity (:mod:`bohmpower.exact._obs_kernels`, numpy twins beside). Everything that
depends only on the model (potentials at the fine points, W and W' tables by r - j, quadrature weights,
FFT plans -- pyFFTW when installed --, work buffers) lives in a :class:`FrameSetup`, built once per run;
the peak memory is ~4 + (N - 1) N-d complex arrays plus slab buffers.

**Densities** (J_k = (1/m) Im(Psi* d_k Psi), rho = |Psi|^2, each summed over k after marginalising):

    n      = rho
    J      = J_k
    eps    = Re[Psi* h_k Psi]
             (kinetic part -(1/2m) Re[Psi* d_k^2 Psi] = (1/2m)|d_k Psi|^2 - (1/4m) d_k^2 rho pointwise)
    p      = Im[Psi* h_k Phi] - Im[Phi* h_k Psi] + chi q d_t phi(x_k) rho
             = d_t Re[Psi* h_k Psi] under H_eff, pointwise; with the kinetic part written as
             -(1/2m) { d_k Im[Psi* d_k Phi + (d_k Psi)* Phi] - 2 Im[(d_k Psi)* d_k Phi] }
             so that only first derivatives of Phi are needed
    fw     = q E(x_k) J_k (chi = 0),   q d_t phi(x_k) rho (chi = 1)     (q E = model.drive_force(t))
    s_C    = (1/2) sum_{j != k} F_kj (J_k + J_j),   F_kj = -W'(x_k - x_j)
    j_E    = J_k Re[Psi* h_k Psi] / rho                                 (= rho v_k e_k)
    L      = L_k = (1/4m) (d_k rho d_t rho / rho - d_k d_t rho),   d_t rho = 2 Im[Psi* Phi],
             d_k d_t rho = 2 Im[(d_k Psi)* Phi + Psi* d_k Phi]
    a      = 2 Gamma_tot Re[Psi* h_k Psi]

Ratios by rho are set to 0 where rho < density_cutoff * max rho (SPEC.md; default 1e-13).

**Volume values** (Theta, Theta' from :mod:`bohmpower.model.volume`):

    particles   = int Theta n             particle_flux = int Theta' J   (= J(a) - J(b) if sharp)
    energy      = int Theta eps           power         = int Theta p    (= dE_Omega/dt, exactly)
    field_work  = int Theta fw            interaction   = int Theta s_C
    quantum_flux  P_S = - int Theta' L    boundary_flux P_B = int Theta' j_E
    absorbed    = int Theta a
    quantum_nonlocal P_N = power - field_work - interaction - quantum_flux - boundary_flux + absorbed
    quantum     = P_S + P_N

For a sharp volume the edge terms are point values, P_S = -(L(a) - L(b)), P_B = j_E(a) - j_E(b). j_E and
L are ratios by rho, not band-limited, so they are not read off the interpolant of their fine marginals:
Psi, d_k Psi, d_k^2 Psi, Phi and d_k Phi (trigonometric polynomials in x_k) are evaluated exactly on the
slice x_k = a (one weight vector contracted along axis k, :meth:`FrameSetup.edge_densities`), the slice
is interpolated (FFT zero-padding) onto the other electrons' grid refined R times per axis
(``numerics.edge_refinement``, :data:`EDGE_REFINEMENT`: 32 for N = 2, 4 for N = 3), the ratios are taken
there pointwise (with the cutoff) and summed, times (dx/R)^(N-1) (times N for fermions). The coarse sum
(R = 1) is not spectrally accurate for these ratios (off by ~1e-4 on the test state, up to ~10 % where
rho has sharper near-nodes). Edges are wrapped into the cell. Smooth volumes use the fine marginals.
:func:`edge_terms` gives these edge values alone, without the fine marginals: the slices of Phi are
contracted from Psi's (Phi @ w = (V - i Gamma_tot) Psi @ w + sum_{o != k} T_o (Psi @ w) + Psi @ (T_k w)),
so the exact run can integrate them on finer window nodes than the other terms.

P_S is the surface form of sum_k int Theta(x_k) rho d_t Q_k (rho d_t Q_k = d_k L_k, THEORY.md section 3).
The diagnostic ``pn_direct`` is sum_k int dx^N Theta(x_k) sum_{j != k} rho (v_j d_j Q_k - v_k d_k Q_j),
with v_k = (1/m) Im(d_k Psi / Psi), Q_k = -(1/2m) Re(d_k^2 Psi / Psi) - (1/2) m v_k^2 (both with the
cutoff), evaluated on the original N-d grid with spectral derivatives; it converges slowly where Psi has
nodes (coincidence planes of fermions, vortices), so the balance value is the reported P_N and
``pn_direct_minus_balance`` is a diagnostic.

**Fields** (original grid): density, current, energy_density, power_density, energy_current,
field_work_density, interaction_density and quantum_density = p + d_x j_E - fw - s_C + a (the local
balance d_t eps + d_x j_E = q J E + s_C + s_S + s_N - a solved for s_S + s_N).

**Globals**: norm = sum |Psi|^2 dx^N; energy = int eps (internal energy <H_int>, or <H> for chi = 1);
power = int fw (the field's power); absorbed_power = int a; total_power = int p (= d energy/dt).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft as sfft

from bohmpower.exact import _obs_kernels
from bohmpower.exact.fftbackend import resolve_fft_backend
from bohmpower.exact.hamiltonian import one_body_sum, pair_sum
from bohmpower.model.volume import quadrature_weights

__all__ = ["EDGE_TERMS", "FIELD_NAMES", "GLOBAL_NAMES", "VOLUME_TERMS", "Frame", "FrameSetup", "edge_terms",
           "frame"]

logger = logging.getLogger(__name__)

FIELD_NAMES = (
    "density",
    "current",
    "energy_density",
    "power_density",
    "energy_current",
    "field_work_density",
    "interaction_density",
    "quantum_density",
)
VOLUME_TERMS = (
    "particles",
    "particle_flux",
    "energy",
    "power",
    "field_work",
    "interaction",
    "quantum",
    "quantum_flux",
    "quantum_nonlocal",
    "boundary_flux",
    "absorbed",
    "pn_direct",
    "pn_direct_minus_balance",
)
GLOBAL_NAMES = ("norm", "energy", "power", "absorbed_power", "total_power")

_DEFAULT_CUTOFF = 1e-13
# Elements per slab buffer of the fine-grid work (FrameSetup holds ~13 of them, complex).
_SLAB_ELEMENTS = 1 << 16


@dataclass
class Frame:
    """Observables of one wavefunction at one time.

    Attributes
    ----------
    t : float
        Time [a.u.].
    fields : dict of str -> ndarray, shape (n_x,)
        FIELD_NAMES on the original grid [per bohr: 1/bohr, 1/time, hartree/bohr, hartree/(bohr time),
        hartree/time, hartree/(bohr time) ...].
    volumes : dict of str -> dict of str -> float
        Per volume name, VOLUME_TERMS [particles: 1; particle_flux: 1/time; energy: hartree; the rest:
        hartree/time].
    globals : dict of str -> float
        GLOBAL_NAMES [norm: 1; energy: hartree; powers: hartree/time].
    """

    t: float
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    volumes: dict[str, dict[str, float]] = field(default_factory=dict)
    globals: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# Spectral helpers. Psi is read as the real-consistent trigonometric interpolant of its samples: the
# Nyquist coefficient c_N (even n_x) is the cosine c_N cos(N x), i.e. split half-half between the modes
# +N and -N. Then a real Psi (times a phase) has a real interpolant, its odd derivatives vanish at the
# Nyquist mode on the grid points (as in hamiltonian.d_axis), and a real stationary state carries no
# current anywhere. The kinetic energy k^2 is the same under every reading.


def _along(v: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = v.shape[0]
    return v.reshape(shape)


def _pad(c: np.ndarray, axis: int, factor: int = 2, out: np.ndarray | None = None,
         scale: float | None = None) -> np.ndarray:
    """Unnormalised FFT ``c`` (n along ``axis``) zero-padded to factor * n, Nyquist split, times
    ``scale`` (default ``factor``: then the inverse FFT of the result gives the interpolant at the
    ``factor``-times refined points x_min + i dx / factor). ``out``: a buffer of the padded shape
    whose entries between the modes are zero already (they are not written)."""
    n = c.shape[axis]
    shape = list(c.shape)
    shape[axis] = factor * n
    big = np.zeros(shape, dtype=complex) if out is None else out
    mul = float(factor) if scale is None else float(scale)  # ifft's 1/(factor n); the interpolant 1/n
    n_pos = (n + 1) // 2  # modes 0 .. n_pos - 1 are >= 0 (and < n/2)
    n_neg = n // 2  # modes -n_neg .. -1 (for even n, -n/2 is the Nyquist)

    def ix(sl: slice) -> tuple:
        out_ix = [slice(None)] * c.ndim
        out_ix[axis] = sl
        return tuple(out_ix)

    big_n = factor * n
    np.multiply(c[ix(slice(0, n_pos))], mul, out=big[ix(slice(0, n_pos))])
    np.multiply(c[ix(slice(n - n_neg, n))], mul, out=big[ix(slice(big_n - n_neg, big_n))])
    if n % 2 == 0:
        half = 0.5 * mul * c[ix(slice(n // 2, n // 2 + 1))]
        big[ix(slice(n // 2, n // 2 + 1))] = half  # +N
        big[ix(slice(big_n - n // 2, big_n - n // 2 + 1))] = half  # -N
    return big


def _refine_axes(a: np.ndarray, axes: tuple[int, ...], factor: int) -> np.ndarray:
    """Trigonometric interpolant of the complex samples ``a`` at the ``factor``-times refined points
    along each of ``axes`` (the other axes untouched)."""
    for ax in axes:
        a = np.fft.ifft(_pad(np.fft.fft(a, axis=ax), ax, factor), axis=ax)
    return a


def _refine_1d(f: np.ndarray) -> np.ndarray:
    """Trigonometric interpolant of real periodic samples (n,) at the 2n refined points."""
    return np.fft.ifft(_pad(np.fft.fft(np.asarray(f, dtype=float)), 0)).real


def _deriv(f: np.ndarray, kx: np.ndarray, axis: int, workers: int) -> np.ndarray:
    """First spectral derivative along ``axis`` (Nyquist mode dropped: the derivative of its cosine
    vanishes on the grid points)."""
    n = kx.shape[0]
    factor = 1j * kx
    if n % 2 == 0:
        factor = factor.copy()
        factor[n // 2] = 0.0
    c = sfft.fft(f, axis=axis, workers=workers)
    c *= _along(factor, f.ndim, axis)
    out = sfft.ifft(c, axis=axis, overwrite_x=True, workers=workers)
    return out if np.iscomplexobj(f) else out.real


# ---------------------------------------------------------------------------------------------------
# FFTs: unnormalised 1D transforms along one axis of contiguous complex arrays.




def _empty(shape: tuple[int, ...], backend: str) -> np.ndarray:
    if backend == "pyfftw":
        import pyfftw

        return pyfftw.empty_aligned(shape, dtype=complex)
    return np.empty(shape, dtype=complex)


class _Transforms:
    """Forward (out of place) and backward (in place) unnormalised FFTs along one axis.

    pyFFTW plans (FFTW_MEASURE, made once per shape/axis on scratch arrays, then pointed at the data
    with ``update_arrays``) when the backend is "pyfftw", else scipy.fft. The inverse is unnormalised
    (callers fold 1/n into their spectral multipliers).
    """

    def __init__(self, backend: str, workers: int):
        self.backend = backend
        self.workers = int(workers)
        self._plans: dict[tuple, Any] = {}

    def _plan(self, shape: tuple[int, ...], axis: int, forward: bool,
              out_of_place: bool = False) -> Any:
        key = (shape, axis, forward, out_of_place)
        plan = self._plans.get(key)
        if plan is None:
            import pyfftw

            # FFTW_MEASURE overwrites the arrays it plans on: plan on scratch, run on the data.
            a = pyfftw.empty_aligned(shape, dtype=complex)
            b = pyfftw.empty_aligned(shape, dtype=complex) if (forward or out_of_place) else a
            plan = pyfftw.FFTW(
                a,
                b,
                axes=(axis,),
                direction="FFTW_FORWARD" if forward else "FFTW_BACKWARD",
                flags=("FFTW_MEASURE",),
                threads=self.workers,
                normalise_idft=False,
            )
            self._plans[key] = plan
        return plan

    @staticmethod
    def _run(plan: Any, src: np.ndarray, dst: np.ndarray) -> None:
        try:
            plan.update_arrays(src, dst)
        except ValueError:  # alignment or strides the plan was not made for: go through its buffers
            np.copyto(plan.input_array, src)
            plan.execute()
            np.copyto(dst, plan.output_array)
            return
        plan.execute()

    def forward(self, src: np.ndarray, dst: np.ndarray, axis: int) -> None:
        """dst = FFT(src) along ``axis`` (both contiguous, same shape)."""
        if self.backend == "pyfftw":
            self._run(self._plan(src.shape, axis, True), src, dst)
            return
        np.copyto(dst, src)
        out = sfft.fft(dst, axis=axis, overwrite_x=True, workers=self.workers)
        if out.ctypes.data != dst.ctypes.data:
            np.copyto(dst, out)

    def backward_to(self, src: np.ndarray, dst: np.ndarray, axis: int) -> None:
        """dst = n * IFFT(src) along ``axis`` (both contiguous, same shape; src unchanged)."""
        if self.backend == "pyfftw":
            self._run(self._plan(src.shape, axis, False, out_of_place=True), src, dst)
            return
        dst[...] = sfft.ifft(src, axis=axis, norm="forward", workers=self.workers)

    def backward(self, buf: np.ndarray, axis: int) -> None:
        """buf = n * IFFT(buf) along ``axis``, in place."""
        if self.backend == "pyfftw":
            self._run(self._plan(buf.shape, axis, False), buf, buf)
            return
        out = sfft.ifft(buf, axis=axis, norm="forward", overwrite_x=True, workers=self.workers)
        if out.ctypes.data != buf.ctypes.data:
            np.copyto(buf, out)


# ---------------------------------------------------------------------------------------------------
# Everything that does not depend on psi or t, built once per model.


def _fine_values(model: Any, name: str, coarse: np.ndarray, xf: np.ndarray) -> np.ndarray:
    """A one-body potential at the fine points: the model's ``<name>_at(x)`` if it has one, else the
    trigonometric interpolant of the grid values (exact for band-limited potentials)."""
    fn = getattr(model, f"{name}_at", None)
    if callable(fn):
        return np.asarray(fn(xf), dtype=float)
    return _refine_1d(coarse)


_FINGERPRINT_REFS = ("grid", "u0", "gamma", "drives", "interaction", "volumes")
_FINGERPRINT_VALUES = ("n_particles", "mass", "include_drive_potential")


def _fingerprint(model: Any) -> tuple:
    """What a FrameSetup depends on: the model's attribute objects (by identity), its scalars, and
    whether it offers u0_at / gamma_at / drive callables."""
    refs = tuple(getattr(model, name, None) for name in _FINGERPRINT_REFS)
    values = tuple(getattr(model, name, None) for name in _FINGERPRINT_VALUES)
    flags = tuple(
        callable(getattr(model, name, None)) for name in ("u0_at", "gamma_at", "drive_potential")
    )
    grid = model.grid
    return refs, values + flags + (int(grid.n_x), float(grid.x_min), float(grid.x_max))


class FrameSetup:
    """The psi- and t-independent part of :func:`frame` for one model, reusable across time steps.

    Build it once per run and pass it to every :func:`frame` call (``frame(psi, model, t,
    setup=setup)``); without it :func:`frame` keeps one such object cached for the last model it saw.

    Parameters
    ----------
    model : Model
        As for :func:`frame`. The setup holds the model's potentials, drive shapes (at the fine points),
        interaction tables, volumes' quadrature weights, FFT plans and work buffers; the model must not
        change while the setup is in use (:meth:`matches` checks the attributes it depends on).
    workers : int
        FFT threads.
    fft_backend : {"auto", "scipy", "pyfftw"}
        "auto" takes pyFFTW when it is installed (as the propagator does).

    Notes
    -----
    Memory: about 4 + (N - 1) complex N-d arrays (the moved wavefunction X, H_eff X being built, one FFT
    scratch, d_j X for the N - 1 other electrons when they interact) plus two real ones (the static
    potential and Gamma_tot), and ~13 complex slab buffers of at most ``_SLAB_ELEMENTS`` each.
    """

    def __init__(self, model: Any, workers: int = 1, fft_backend: str = "auto"):
        grid = model.grid
        n = int(grid.n_x)
        n_p = int(model.n_particles)
        self.n, self.n_p = n, n_p
        self.workers = int(workers)
        self.backend = resolve_fft_backend(fft_backend)
        self.fft = _Transforms(self.backend, self.workers)
        self._key = _fingerprint(model)
        self.dx = dx = float(grid.dx)
        self.x = x = np.asarray(grid.x, dtype=float)
        self.kx = kx = np.asarray(grid.k, dtype=float)
        self.xf = xf = float(grid.x_min) + 0.5 * dx * np.arange(2 * n)
        self.kf = 2.0 * np.pi * np.fft.fftfreq(2 * n, d=0.5 * dx)
        self.mass = m = float(model.mass)
        self.chi = bool(getattr(model, "include_drive_potential", False))
        inter = getattr(model, "interaction", None)
        if inter is None or getattr(inter, "kind", "none") == "none":
            self.w = self.dw = None
        else:
            self.w, self.dw = inter.w, inter.dw
        self.u0 = u0 = np.array(model.u0, dtype=float)
        gamma = getattr(model, "gamma", None)
        self.gamma = gamma = np.zeros(n) if gamma is None else np.array(gamma, dtype=float)
        self.absorbing = bool(np.any(gamma != 0.0))
        self.u0_f = _fine_values(model, "u0", u0, xf)
        self.gamma_f = (
            _fine_values(model, "gamma", gamma, xf) if self.absorbing else np.zeros(2 * n)
        )

        # Drive shapes at the fine points (only the profiles f_i(t), f_i'(t) change with t).
        drives = getattr(model, "drives", None)
        self.drives = None if drives is None else tuple(drives)
        if self.drives is not None:
            self.drive_g_f = [np.asarray(d.potential(xf), dtype=float) for d in self.drives]
            self.drive_force_f = [np.asarray(d.force(xf), dtype=float) for d in self.drives]

        # Static potential and Gamma_tot on the N-d grid (symmetric in the electrons, so the same in
        # every axis order), as in hamiltonian.apply_hamiltonian.
        self.v_static = one_body_sum(u0, n_p) + pair_sum(self.w, x, n_p)
        self.gamma_tot = one_body_sum(gamma, n_p) if self.absorbing else np.zeros((1,) * n_p)

        # W and F = -W' at (fine x_k) - (grid x_j) = (2 r + parity - 2 j) dx / 2, by parity and r - j.
        d = np.arange(-(n - 1), n, dtype=float)
        self.wtab = np.zeros((2, 2 * n - 1))
        self.ftab = np.zeros((2, 2 * n - 1))
        if self.w is not None:
            for par in (0, 1):
                r = (d + 0.5 * par) * dx
                self.wtab[par] = self.w(r)
                self.ftab[par] = -np.asarray(self.dw(r), dtype=float)
        self.gamma_par = np.stack([self.gamma_f[0::2], self.gamma_f[1::2]])

        # Spectral multipliers (1/n of the inverse FFT folded in). Even fine points are the grid
        # points, odd ones the midpoints, reached by the half-step shift exp(i k dx/2). The Nyquist
        # coefficient c_N (even n) is the cosine c_N cos(k_N (x - x_min)): it vanishes at the
        # midpoints, its derivative vanishes at the grid points and is -k_N c_N (-1)^r at the midpoints,
        # and its second derivative is -k_N^2 c_N (-1)^r at the grid points.
        shift = np.exp(0.5j * kx * dx)
        tkin = kx**2 / (2.0 * m)
        e1 = 1j * kx
        s0 = shift.copy()
        s1 = 1j * kx * shift
        s2 = tkin * shift
        if n % 2 == 0:
            e1[n // 2] = 0.0
            s0[n // 2] = 0.0
            s1[n // 2] = -np.pi / dx
            s2[n // 2] = 0.0
        self.mul_t = (tkin / n).astype(complex)  # -(1/2m) d^2 at the grid points
        self.mul_e1 = e1 / n  # d at the grid points
        self.mul_s0 = s0 / n  # value at the midpoints
        self.mul_s1 = s1 / n  # d at the midpoints
        self.mul_s2 = s2 / n  # -(1/2m) d^2 at the midpoints

        # Rows of the (n^(N-1), n) view and the other electrons' grid indices of each row.
        n_o = n_p - 1
        n_rows = n**n_o
        self.n_rows = n_rows
        grids = np.indices((n,) * n_o).reshape(n_o, n_rows).T if n_o else np.zeros((1, 0), int)
        self.rowidx = np.ascontiguousarray(grids, dtype=np.int64)
        self.gamrow = gamma[self.rowidx].sum(axis=1) if n_o else np.zeros(1)
        per = max(1, min(n_rows, _SLAB_ELEMENTS // n))
        while n_rows % per:  # a divisor of n_rows: every slab has the same shape (one FFT plan)
            per -= 1
        self.slab_rows = per

        # Work buffers.
        shape = (n,) * n_p
        b = self.backend
        self.X = _empty(shape, b)
        self.Q = _empty(shape, b)
        self.C = _empty(shape, b)
        self.dX = _empty((max(n_o, 1),) + shape, b) if (self.dw is not None and n_o) else None
        sl = (per, n)
        self.slab = {name: _empty(sl, b) for name in _SLAB_BUFFERS}
        # The products of X's and Phi's spectra with their multipliers, one buffer per factor
        # (each (per, n) slice contiguous and aligned: one FFT plan for all).
        self.x_products = _empty((len(_X_FACTORS), per, n), b)
        self.phi_products = _empty((len(_PHI_FACTORS), per, n), b)
        self.x_muls = np.ascontiguousarray([getattr(self, mul) for mul in _X_FACTORS.values()])
        self.phi_muls = np.ascontiguousarray([getattr(self, mul) for mul in _PHI_FACTORS.values()])
        self.djo = _empty((max(n_o, 1), per, n), b)
        self._no_dj = np.zeros((1, 1, 1), dtype=complex)

        # Volumes: quadrature weights on the fine grid, stacked.
        vols = tuple(getattr(model, "volumes", ()) or ())
        self.volume_names = [v.name for v in vols]
        wts = [quadrature_weights(xf, 2 * n, v) for v in vols]
        self.w_theta = np.array([w for w, _ in wts]).reshape(len(vols), 2 * n)
        self.w_edge = np.array([we for _, we in wts]).reshape(len(vols), 2 * n)
        self._sharp_edges(model, vols)
        self._u0_copy = u0.copy()
        self._gamma_copy = gamma.copy()

    def _sharp_edges(self, model: Any, vols: tuple) -> None:
        """Point-evaluation weights and one-body potentials at the edges of the sharp volumes.

        ``edge_pos`` (E,) are the distinct edge points, ``edge_sign`` (n_volumes, E) the +1 (x_min) /
        -1 (x_max) of each volume's Theta' = delta(x - a) - delta(x - b). ``edge_w`` (3, n, E) are the
        weights whose dot product with grid samples gives the trigonometric interpolant, its first and
        its second derivative at the edge points (Nyquist read as a cosine, as everywhere here).
        """
        n, dx = self.n, self.dx
        x0, length = float(self.x[0]), n * dx
        pos: list[float] = []
        signs: list[list[tuple[int, float]]] = []
        for v in vols:
            pairs: list[tuple[int, float]] = []
            if v.sharp:
                for p_raw, sg in ((float(v.x_min), 1.0), (float(v.x_max), -1.0)):
                    # The periodic image inside the cell: where the potentials of the model live
                    # (an edge at x_max + L of a complement is the edge x_max).
                    p = x0 + float(np.mod(p_raw - x0, length))
                    if p not in pos:
                        pos.append(p)
                    pairs.append((pos.index(p), sg))
            signs.append(pairs)
        self.edge_pos = e_pos = np.array(pos, dtype=float)
        n_e = e_pos.shape[0]
        self.edge_sign = np.zeros((len(vols), n_e))
        self.edge_sharp = np.array([bool(v.sharp) for v in vols], dtype=bool)
        for iv, pairs in enumerate(signs):
            for ie, sg in pairs:
                self.edge_sign[iv, ie] += sg
        if n_e == 0:
            return
        # f(a) = (1/n) sum_q c_q E_q(a) with c = FFT(f): f(a) = sum_i f_i [FFT(E)_i / n].
        y = e_pos - x0
        k = self.kx[:, None]
        e0 = np.exp(1j * k * y[None, :])
        e1 = 1j * k * e0
        e2 = -(k**2) * e0
        if n % 2 == 0:
            kn = np.pi / dx
            e0[n // 2] = np.cos(kn * y)
            e1[n // 2] = -kn * np.sin(kn * y)
            e2[n // 2] = -(kn**2) * np.cos(kn * y)
        self.edge_w = np.stack([np.fft.fft(e, axis=0) / n for e in (e0, e1, e2)])
        # For the edge-only evaluation (`edge_terms`): (T_k X) @ w = X @ (T_k w), T_k the grid's
        # kinetic operator along k (real, symmetric, circulant), so Phi's slice needs no H_eff X.
        tkin = (self.kx**2 / (2.0 * self.mass))[:, None]
        tw = [np.fft.ifft(tkin * np.fft.fft(w, axis=0), axis=0) for w in self.edge_w[:2]]
        self.edge_wx = np.concatenate([self.edge_w[0], self.edge_w[1], self.edge_w[2]] + tw, axis=1)
        self.edge_wq = np.concatenate([self.edge_w[0], self.edge_w[1]], axis=1)
        self.edge_w3 = np.ascontiguousarray(self.edge_wx[:, :3 * n_e])  # Psi, d_k Psi, d_k^2 Psi
        fn = getattr(model, "u0_at", None)
        self.edge_u0 = (
            np.asarray(fn(e_pos), dtype=float) if callable(fn) else self.u0 @ self.edge_w[0].real
        )
        if self.drives is not None:
            self.edge_drive_g = [np.asarray(d.potential(e_pos), dtype=float) for d in self.drives]
        # The slices are summed over the other electrons' coordinates on a grid refined
        # ``edge_refinement`` times (band-limited interpolation): the ratios by rho on them are not
        # band-limited, so the coarse sum is not spectrally accurate (module Notes).
        self.edge_refinement = r_f = edge_refinement_of(model)
        y = float(self.x[0]) + dx / r_f * np.arange(r_f * n)
        # (1/2) W(a - y_j) for every edge point and refined point y_j, shape (R n, E).
        self.edge_halfw = (
            None if self.w is None else 0.5 * np.asarray(self.w(e_pos[None, :] - y[:, None]))
        )
        self.edge_halfw_t = (np.zeros((1, 1)) if self.edge_halfw is None
                             else np.ascontiguousarray(self.edge_halfw.T))  # (E, R n)
        if self.n_p == 2:  # N = 2 slice buffers: (5, E, n) values and spectra, (5, E, R n) refined
            b = self.backend
            self._edge_hat = _empty((5, n_e, n), b)
            self._edge_hat_f = _empty((5, n_e, n), b)
            self._edge_big = _empty((5, n_e, r_f * n), b)
            self._edge_big[...] = 0.0
            self._edge_fine = _empty((5, n_e, r_f * n), b)

    def edge_slices(self, psi: np.ndarray, qpot: np.ndarray, k: int) -> list:
        """The five slices of :meth:`edge_densities` along axis ``k`` of ``psi`` itself (its own
        layout), without H_eff Psi on the grid: ``qpot`` is (V - i Gamma_tot) psi (the potential
        part of H_eff, symmetric in the electrons), and

            Phi @ w = qpot @ w + sum_{o != k} T_o (psi @ w) + psi @ (T_k w)

        contracted along k (the kinetic operators along different axes commute with the contraction).
        Each slice has shape (n,)*(N-1) + (E,), the other electrons in their order.
        """
        n, n_p = self.n, self.n_p
        n_e = self.edge_pos.shape[0]
        if k == n_p - 1:
            a = psi.reshape(-1, n) @ self.edge_wx
            b = qpot.reshape(-1, n) @ self.edge_wq
        elif k == 0:  # contract the leading axis without moving psi (BLAS reads it transposed)
            a = (self.edge_wx.T @ psi.reshape(n, -1)).T
            b = (self.edge_wq.T @ qpot.reshape(n, -1)).T
        else:
            a = np.moveaxis(psi, k, -1).reshape(-1, n) @ self.edge_wx
            b = np.moveaxis(qpot, k, -1).reshape(-1, n) @ self.edge_wq
        lead = (n,) * (n_p - 1) + (n_e,)
        p0, p1, p2, t0, t1 = (a[:, i * n_e:(i + 1) * n_e].reshape(lead) for i in range(5))
        f0 = b[:, :n_e].reshape(lead) + t0
        f1 = b[:, n_e:].reshape(lead) + t1
        if n_p > 1:
            pp = np.stack([p0, p1])  # T_o of both slices in one transform per other axis
            for o in range(1, n_p):
                c = sfft.fft(pp, axis=o, workers=self.workers)
                c *= _along(self.mul_t * n, pp.ndim, o)
                t_o = sfft.ifft(c, axis=o, overwrite_x=True, workers=self.workers)
                f0 = f0 + t_o[0]
                f1 = f1 + t_o[1]
        return [p0, p1, p2, f0, f1]

    def _refine_edge_slices(self, st: np.ndarray) -> np.ndarray:
        """The trigonometric interpolant of the slices ``st`` (5, E, n) at the R n refined points of
        the other electron (N = 2): zero-padding in Fourier space, Nyquist split half-half."""
        hat, big = self._edge_hat_f, self._edge_big
        self.fft.forward(st, hat, 2)
        # the unnormalised inverse of R n points: the interpolant needs 1/n
        _pad(hat, 2, self.edge_refinement, out=big, scale=1.0 / self.n)
        out = self._edge_fine
        self.fft.backward_to(big, out, 2)
        return out

    def edge_densities(self, t_qphi: np.ndarray, rho_floor: float,
                       vals: list | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(j_E, L_k, J_k) at x_k = every edge point, summed over the other electrons' grid (E,)
        each, for the moved wavefunction ``X`` and ``Q`` = H_eff X (X layout, axis k last), or for
        the five slices ``vals`` of :meth:`edge_slices`; not yet times dx^(N-1).

        Parameters
        ----------
        t_qphi : ndarray, shape (E,)
            chi q phi(a, t) at the edge points [hartree] (zeros for chi = 0).
        rho_floor : float
            Density cutoff [bohr^-N].

        Notes
        -----
        Psi, d_k Psi, d_k^2 Psi, Phi and d_k Phi are trigonometric polynomials in x_k, so their values
        on the slice x_k = a are exact; the ratios by rho are taken on the slice, pointwise:

            j_E = J_k Re[Psi* h_k Psi] / rho,   L_k = (1/4m) (d_k rho d_t rho / rho - d_k d_t rho).
        """
        n, n_o = self.n, self.n_p - 1
        n_e = self.edge_w.shape[2]
        if vals is None:
            x2 = self.X.reshape(-1, n)
            q2 = self.Q.reshape(-1, n)
            lead = (n,) * n_o + (n_e,)
            a, b = x2 @ self.edge_w3, q2 @ self.edge_wq  # one pass over X and one over Q
            vals = [a[:, i * n_e:(i + 1) * n_e].reshape(lead) for i in range(3)]
            vals += [b[:, i * n_e:(i + 1) * n_e].reshape(lead) for i in range(2)]
        base = self.edge_u0 + t_qphi  # (E,)
        r_f = self.edge_refinement
        hw = self.edge_halfw
        if n_o <= 1:
            sums = np.zeros((3, n_e))
            if n_o == 0:
                st = np.stack(vals)[:, :, None]  # (5, E, 1)
            else:
                st = self._edge_hat  # the five slices, contiguous along the other electron
                np.copyto(st, np.stack(vals).transpose(0, 2, 1))
                if r_f > 1:  # refined in one out-of-place transform pair (module Notes)
                    st = self._refine_edge_slices(st)
            _obs_kernels.edge_sums_nb(st, base, self.edge_halfw_t, hw is not None and n_o == 1,
                                      1.0 / self.mass, rho_floor, sums)
            return sums[0] / r_f, sums[1] / r_f, sums[2] / r_f
        # N = 3: refine along the first other electron, then along the second block by block
        # (the refined plane is never held whole); each block's points flattened for the kernel.
        vals = [_refine_axes(a, (0,), r_f) if r_f > 1 else a for a in vals]
        sums = np.zeros((3, n_e))
        part_sums = np.zeros((3, n_e))
        zero = np.zeros(n_e)
        block = max(1, (1 << 18) // (r_f * n * n_e))
        for i0 in range(0, r_f * n, block):
            sl = slice(i0, i0 + block)
            part = np.stack([_refine_axes(a[sl], (1,), r_f) if r_f > 1 else a[sl] for a in vals])
            st = np.ascontiguousarray(np.moveaxis(part, -1, 1).reshape(5, n_e, -1))
            v = base[None, None, :] + (0.0 if hw is None else hw[sl][:, None, :] + hw[None, :, :])
            v = np.ascontiguousarray(np.broadcast_to(v, part.shape[1:]).reshape(-1, n_e).T)
            _obs_kernels.edge_sums_nb(st, zero, v, True, 1.0 / self.mass, rho_floor, part_sums)
            sums += part_sums
        je, lk, jk = sums / r_f**2
        return je, lk, jk

    def matches(self, model: Any, workers: int | None = None) -> bool:
        """True when ``model`` is the one this setup was built for and is unchanged."""
        if workers is not None and int(workers) != self.workers:
            return False
        key = _fingerprint(model)
        refs, values = self._key
        if len(key[0]) != len(refs) or any(a is not b for a, b in zip(key[0], refs)):
            return False
        if key[1] != values:
            return False
        # In-place edits of the potential arrays (cheap: 1D).
        return np.array_equal(np.asarray(model.u0, dtype=float), self._u0_copy) and np.array_equal(
            np.zeros(self.n)
            if getattr(model, "gamma", None) is None
            else np.asarray(model.gamma, float),
            self._gamma_copy,
        )

    def drive_1d(self, model: Any, t: float) -> np.ndarray | None:
        """q phi(x, t) on the grid (n,) [hartree], or None without a drive."""
        if (self.drives is not None and self.drives) or (
                self.drives is None and hasattr(model, "drive_potential")):
            return np.asarray(model.drive_potential(t), dtype=float)
        return None

    def drive_fields(self, model: Any, t: float) -> tuple:
        """(drive_1d, q phi, q E, q d_t phi) at time t; the last three at the fine points, (2n,)."""
        n = self.n
        qphi_f = np.zeros(2 * n)
        qe_f = np.zeros(2 * n)
        qdtphi_f = np.zeros(2 * n)
        drive_1d = self.drive_1d(model, t)
        if self.drives is not None:
            for d, g, fo in zip(self.drives, self.drive_g_f, self.drive_force_f):
                f_t, df_t = float(d.profile(t)), float(d.profile_dt(t))
                qphi_f += f_t * g
                qdtphi_f += df_t * g
                qe_f += f_t * fo
        elif drive_1d is not None:
            qphi_f = _refine_1d(drive_1d)
            qe_f = _refine_1d(model.drive_force(t))
            qdtphi_f = _refine_1d(model.drive_potential_dt(t))
        return drive_1d, qphi_f, qe_f, qdtphi_f

    def edge_drive(self, model: Any, t: float, drive_1d: np.ndarray | None) -> np.ndarray:
        """chi q phi(a, t) at the sharp-edge points a, shape (E,) [hartree] (zeros when chi = 0)."""
        out = np.zeros(self.edge_pos.shape[0])
        if not self.chi:
            return out
        if self.drives is not None:
            for d, g in zip(self.drives, self.edge_drive_g):
                out += float(d.profile(t)) * g
        elif drive_1d is not None:
            out += drive_1d @ self.edge_w[0].real
        return out


#: Default refinement of the sharp-volume edge slices along the other electrons' axes, by N
#: (N = 2: on a two-fermion collision at a barrier in a bias, 256^2, P_S moves by 3e-3 of itself from
#: 16 to 64 and 2e-5 from 32 to 64, P_B by 1e-4 and 5e-7; for N = 3 the slice is a plane and
#: 4 costs 16x the coarse sum already).
EDGE_REFINEMENT = {1: 1, 2: 32, 3: 4}


def edge_refinement_of(model: Any) -> int:
    """``numerics.edge_refinement`` of the model's run, or :data:`EDGE_REFINEMENT` for its N."""
    cfg = getattr(model, "config", None)
    value = getattr(getattr(cfg, "numerics", None), "edge_refinement", None)
    if value is not None:
        return int(value)
    return EDGE_REFINEMENT.get(int(model.n_particles), 1)


_SLAB_BUFFERS = ("A", "F", "D")
#: The interpolated factors of the fine marginals (module Notes) and their spectral multipliers:
#: from X's spectrum -(1/2m) d^2 X at the grid points (te), X, d X at the midpoints (p0o, p1o),
#: d X at the grid points (p1e), -(1/2m) d^2 X at the midpoints (to); from Phi's the same for
#: Phi, d Phi (f0o, f1e, f1o).
_X_FACTORS = {"te": "mul_t", "p0o": "mul_s0", "p1e": "mul_e1", "p1o": "mul_s1", "to": "mul_s2"}
_PHI_FACTORS = {"f0o": "mul_s0", "f1e": "mul_e1", "f1o": "mul_s1"}

# One-entry cache for frame() calls without an explicit setup: [(model, setup)].
_LAST_SETUP: list = []


def _setup_for(model: Any, workers: int) -> FrameSetup:
    if _LAST_SETUP:
        cached_model, setup = _LAST_SETUP[0]
        if cached_model is model and setup.matches(model, workers):
            return setup
    _LAST_SETUP.clear()
    cfg = getattr(model, "config", None)
    backend = getattr(getattr(cfg, "numerics", None), "fft_backend", None) or "auto"
    setup = FrameSetup(model, workers=workers, fft_backend=backend)
    _LAST_SETUP.append((model, setup))
    return setup


def _marginal_axes(model: Any, n_p: int) -> tuple[list[int], float]:
    """The electron axes whose marginals are summed and their weight: identical fermions give equal
    marginals, so axis 0 times N (module Notes); distinguishable electrons every axis once."""
    if getattr(model, "statistics", "fermion") == "fermion":
        return [0], float(n_p)
    return list(range(n_p)), 1.0


def _density_cutoff(model: Any) -> float:
    cfg = getattr(model, "config", None)
    num = getattr(cfg, "numerics", None)
    if num is not None and getattr(num, "density_cutoff", None) is not None:
        return float(num.density_cutoff)
    return _DEFAULT_CUTOFF


# ---------------------------------------------------------------------------------------------------
# Per-axis marginals on the 2x grid


_MARGS = ("rho", "j", "erho", "g", "h1", "pot_p", "je", "l", "sc", "a")


def _axis_marginals(
    s: FrameSetup,
    v1: np.ndarray,
    rho_floor: float,
    store_d1: np.ndarray | None,
    store_d2: np.ndarray | None,
) -> np.ndarray:
    """Fine marginals (len(_MARGS), 2n) along the last axis of ``s.X`` (the moved Psi), rows summed
    (not yet times dx^(N-1)); ``s.Q`` must hold H_eff X minus the kinetic energy along that axis and is
    overwritten with H_eff X.

    Fills ``store_d1``/``store_d2`` (X layout) with d_k X and d_k^2 X on the grid when given.

    Notes
    -----
    Each density is a product of two factors interpolated along k. At the grid points (even fine
    points) the factors are X, Phi and their spectral derivatives; at the midpoints (odd fine points)
    they come from the half-step shift. One forward FFT per function and one inverse FFT per
    (factor, parity) are needed: 12 + 2 (N - 1) per slab row set (the zero-padded 2n-point transform
    would cost about twice as much per factor).
    """
    n, n_o = s.n, s.n_p - 1
    fft, b = s.fft, s.slab
    kern = _obs_kernels.fine_marginals_nb
    acc = np.zeros((2, _obs_kernels.N_MARGS, n))  # parity, density, r
    X2 = s.X.reshape(-1, n)
    Q2 = s.Q.reshape(-1, n)
    dX2 = s.dX.reshape(s.dX.shape[0], -1, n) if s.dX is not None else None
    use_w, use_dw = s.w is not None, s.dw is not None and n_o > 0
    inv_m = 1.0 / s.mass
    per = s.slab_rows
    vpar = (np.ascontiguousarray(v1[0::2]), np.ascontiguousarray(v1[1::2]))

    products = _obs_kernels.spectral_products_nb
    xp, fp = s.x_products, s.phi_products

    for r0 in range(0, s.n_rows, per):
        sl = slice(r0, r0 + per)
        x2, q2 = X2[sl], Q2[sl]
        fft.forward(x2, b["A"], 1)
        products(b["A"], s.x_muls, xp)  # te, p0o, p1e, p1o, to (_X_FACTORS) in one pass
        for buf in xp:
            fft.backward(buf, 1)
        te, p0o, p1e, p1o, to = xp
        np.add(q2, te, out=q2)  # q2 is now Phi = H_eff X on these rows
        fft.forward(q2, b["F"], 1)
        products(b["F"], s.phi_muls, fp)  # f0o, f1e, f1o (_PHI_FACTORS)
        for buf in fp:
            fft.backward(buf, 1)
        f0o, f1e, f1o = fp
        if use_dw:
            dje = dX2[:, sl]
            djo = s.djo
            for o in range(n_o):
                fft.forward(dje[o], b["D"], 1)
                np.multiply(b["D"], s.mul_s0, out=djo[o])
                fft.backward(djo[o], 1)
        else:
            dje = djo = s._no_dj
        rows = (s.rowidx[sl], s.gamrow[sl])
        kern(
            x2,
            p1e,
            te,
            q2,
            f1e,
            dje,
            vpar[0],
            s.gamma_par[0],
            s.wtab[0],
            s.ftab[0],
            *rows,
            inv_m,
            rho_floor,
            use_w,
            use_dw,
            s.absorbing,
            acc[0],
        )
        kern(
            p0o,
            p1o,
            to,
            f0o,
            f1o,
            djo,
            vpar[1],
            s.gamma_par[1],
            s.wtab[1],
            s.ftab[1],
            *rows,
            inv_m,
            rho_floor,
            use_w,
            use_dw,
            s.absorbing,
            acc[1],
        )
        if store_d1 is not None:
            store_d1.reshape(-1, n)[sl] = p1e
            np.multiply(te, -2.0 * s.mass, out=store_d2.reshape(-1, n)[sl])
    return acc.transpose(1, 2, 0).reshape(_obs_kernels.N_MARGS, 2 * n)


def _potential_times(s: FrameSetup, src: np.ndarray, drive_1d: np.ndarray | None) -> None:
    """s.Q = (V_static + sum_j q phi(x_j, t) - i Gamma_tot) src (any axis order: V is symmetric)."""
    n, n_p = s.n, s.n_p
    d = np.zeros(n) if drive_1d is None else drive_1d
    shape3 = (n if n_p == 3 else 1, n if n_p >= 2 else 1, n)
    g3 = s.gamma_tot.reshape(shape3) if s.absorbing else s.gamma_tot.reshape(1, 1, 1)
    _obs_kernels.potential_times_nb(
        src.reshape(shape3),
        s.v_static.reshape(shape3),
        g3,
        d,
        n_p,
        s.absorbing,
        s.Q.reshape(shape3),
    )


def _hamiltonian_but_k(s: FrameSetup, drive_1d: np.ndarray | None) -> None:
    """s.Q = H_eff X without the kinetic energy along the last axis (k); fills s.dX with d_j X.

    H_eff = sum_j -(1/2m) d_j^2 + V_static + sum_j q phi(x_j, t) - i Gamma_tot (module Notes).
    """
    n_p = s.n_p
    _potential_times(s, s.X, drive_1d)
    for o in range(n_p - 1):
        s.fft.forward(s.X, s.C, o)
        if s.dX is not None:
            np.multiply(s.C, _along(s.mul_e1, n_p, o), out=s.dX[o])
            s.fft.backward(s.dX[o], o)
        np.multiply(s.C, _along(s.mul_t, n_p, o), out=s.C)
        s.fft.backward(s.C, o)
        np.add(s.Q, s.C, out=s.Q)


# ---------------------------------------------------------------------------------------------------
# Direct P_N on the original grid (diagnostic)


def _pn_direct_pairs(s: FrameSetup, d1: np.ndarray, d2: np.ndarray, rho_floor: float) -> np.ndarray:
    """Original-grid marginal (n,) of the direct P_N integrand's pairs (k, j), j != k, for the axis k
    that ``s.X`` holds last (X layout, after :func:`_axis_marginals`), before the 1/N weight;
    ``d1``, ``d2`` are d_k X and d_k^2 X.

    Notes
    -----
    Relabelling the second half of the sum, P_N = sum_{k != j} int dx^N (Theta(x_k) - Theta(x_j)) X_kj
    with X_kj = rho v_j d_j Q_k, so the marginal is sum over ordered pairs of marg_k X_kj - marg_j X_kj.
    d_j Q_k is taken from ratios of mixed spectral derivatives of Psi (smooth), never by differentiating
    Q_k (which the density cutoff makes discontinuous):

        d_j Q_k = -(1/2m) Re[psi_kkj/psi - (psi_kk/psi)(psi_j/psi)] - m v_k d_j v_k,
        d_j v_k = (1/m) Im[psi_kj/psi - (psi_k/psi)(psi_j/psi)].

    Per pair: the FFTs along j of d_k X and d_k^2 X (and of X unless ``s.dX`` holds d_j X already)
    and one fused pass (:func:`bohmpower.exact._obs_kernels.pn_direct_nb`). For fermions only k = 0
    is summed (the caller multiplies by N, as for every marginal).
    """
    n_p = s.n_p
    out = np.zeros(s.n)
    lead = 3 - n_p  # the kernel's view is 3D: a leading axis of length 1 for N = 2
    view = (1,) * lead + s.X.shape
    work = (s.C, _empty(s.X.shape, s.backend), _empty(s.X.shape, s.backend))
    for o in range(n_p - 1):  # the other electrons' axes in the X layout
        mul = _along(s.mul_e1, n_p, o)
        d_j = []
        for src, dst in zip((s.X, d1, d2), work):
            if src is s.X and s.dX is not None:
                d_j.append(s.dX[o])  # from _hamiltonian_but_k
                continue
            s.fft.forward(src, dst, o)
            np.multiply(dst, mul, out=dst)
            s.fft.backward(dst, o)
            d_j.append(dst)
        _obs_kernels.pn_direct_nb(*(a.reshape(view) for a in (s.X, d1, d2, *d_j)), n_p - 1 + lead,
                                  o + lead, s.mass, rho_floor, out)
    return out * s.dx ** (n_p - 1)


# ---------------------------------------------------------------------------------------------------


def frame(
    psi: np.ndarray,
    model: Any,
    t: float,
    workers: int = 1,
    diagnostics: bool = True,
    setup: FrameSetup | None = None,
) -> Frame:
    """Fields, per-volume values and globals of the grid wavefunction ``psi`` at time ``t``.

    Parameters
    ----------
    psi : ndarray, complex, shape (n_x,)*N
        Many-electron wavefunction on the product grid, sum |psi|^2 dx^N = norm [bohr^(-N/2)].
    model : Model
        Any object with the Model attributes of docs/design.md: grid, n_particles, mass, statistics,
        u0, gamma, drives (or drive_potential/drive_force/drive_potential_dt), interaction, volumes,
        include_drive_potential, config (optional; numerics.density_cutoff). Optional callables
        ``u0_at(x)``, ``gamma_at(x)`` give the potentials off the grid; without them the
        trigonometric interpolant of the grid values is used.
    t : float
        Time [a.u.] (sets the drive).
    workers : int
        FFT threads (ignored when ``setup`` is given: the setup's own count is used).
    diagnostics : bool
        Compute ``pn_direct`` and ``pn_direct_minus_balance`` (three FFT pairs along the other
        axes per pair of electrons and one fused pass: ~0.3 of the rest at 256^2, ~0.15 at 512^2,
        benchmarks/README.md); when False they are NaN. Every reported term is computed either way.
    setup : FrameSetup, optional
        The model's reusable setup (build it once per run: ``FrameSetup(model, workers)``). Without it
        the setup of the last model seen is reused if that model is unchanged, else rebuilt.

    Returns
    -------
    Frame
        See the module Notes for every formula.
    """
    psi = np.asarray(psi)
    if not np.iscomplexobj(psi):
        psi = psi.astype(complex)
    n_p_model, n_model = int(model.n_particles), int(model.grid.n_x)
    if psi.ndim != n_p_model or psi.shape != (n_model,) * n_p_model:
        raise ValueError(f"psi has shape {psi.shape}, expected {(n_model,) * n_p_model}")
    s = setup if setup is not None else _setup_for(model, workers)
    n, n_p, m = s.n, s.n_p, s.mass
    drive_1d, qphi_f, qe_f, qdtphi_f = s.drive_fields(model, t)
    v1 = s.u0_f + s.chi * qphi_f

    axes, weight = _marginal_axes(model, n_p)
    pn = np.zeros(n)
    total = np.zeros((len(_MARGS), 2 * n))
    n_edges = s.edge_pos.shape[0]
    edge_je = np.zeros(n_edges)
    edge_l = np.zeros(n_edges)
    edge_qphi = s.edge_drive(model, t, drive_1d) if n_edges else None
    norm_sum = rho_floor = None
    for k in axes:
        # X layout: axis k last (contiguous), the other electrons leading.
        np.copyto(s.X, np.moveaxis(psi, k, -1))
        if norm_sum is None:
            norm_sum, rho_max = _obs_kernels.abs2_sum_max_nb(s.X.reshape(-1, n))
            rho_floor = _density_cutoff(model) * rho_max
        _hamiltonian_but_k(s, drive_1d)
        st1 = st2 = None
        if n_p >= 2 and diagnostics:
            st1 = _empty(psi.shape, s.backend)
            st2 = _empty(psi.shape, s.backend)
        total += _axis_marginals(s, v1, rho_floor, st1, st2)
        if n_edges:
            je_k, l_k, _ = s.edge_densities(edge_qphi, rho_floor)
            edge_je += je_k
            edge_l += l_k
        if st1 is not None:
            pn += _pn_direct_pairs(s, st1, st2, rho_floor)
        del st1, st2
    total *= weight * s.dx ** (n_p - 1)
    edge_je *= weight * s.dx ** (n_p - 1)
    edge_l *= weight * s.dx ** (n_p - 1)
    tot = dict(zip(_MARGS, total))

    pn_f = _refine_1d(weight * pn) if diagnostics else np.full(2 * n, np.nan)

    # Assemble the fine marginals.
    kf = s.kf
    n_f = tot["rho"]
    j_f = tot["j"]
    eps_f = tot["erho"]
    kin_p = -0.5 / m * (_deriv(tot["g"], kf, 0, 1) - 2.0 * tot["h1"])
    p_f = kin_p + tot["pot_p"] + (qdtphi_f * n_f if s.chi else 0.0)
    fw_f = qdtphi_f * n_f if s.chi else qe_f * j_f
    sc_f = tot["sc"]
    je_f = tot["je"]
    l_f = tot["l"]
    a_f = tot["a"]
    quantum_f = p_f + _deriv(je_f, kf, 0, 1) - fw_f - sc_f + a_f

    h = 0.5 * s.dx
    glob = {
        "norm": float(norm_sum) * s.dx**n_p,
        "energy": float(eps_f.sum() * h),
        "power": float(fw_f.sum() * h),
        "absorbed_power": float(a_f.sum() * h),
        "total_power": float(p_f.sum() * h),
    }
    fields = {
        "density": n_f[::2].copy(),
        "current": j_f[::2].copy(),
        "energy_density": eps_f[::2].copy(),
        "power_density": p_f[::2].copy(),
        "energy_current": je_f[::2].copy(),
        "field_work_density": np.asarray(fw_f)[::2].copy(),
        "interaction_density": sc_f[::2].copy(),
        "quantum_density": quantum_f[::2].copy(),
    }

    # Volume values: integrals are dot products with quadrature weights (model.volume), stacked.
    theta_vals = s.w_theta @ np.stack([n_f, eps_f, p_f, fw_f, sc_f, a_f, pn_f]).T
    edge_vals = s.w_edge @ np.stack([j_f, l_f, je_f]).T
    if n_edges:
        # Sharp volumes: j_E and L_k at the edges from the slice x_k = a (not band-limited, so not
        # read off their fine marginals' interpolant; module Notes).
        sharp_vals = s.edge_sign @ np.stack([edge_l, edge_je]).T
        edge_vals[s.edge_sharp, 1:] = sharp_vals[s.edge_sharp]
    volumes: dict[str, dict[str, float]] = {}
    for name, th, ed in zip(s.volume_names, theta_vals, edge_vals):
        parts, energy, power, fwork, inter, absorbed, pn_direct = (float(v) for v in th)
        pflux, l_edge, je_edge = (float(v) for v in ed)
        qflux = -l_edge
        pn_bal = power - fwork - inter - qflux - je_edge + absorbed
        volumes[name] = {
            "particles": parts,
            "particle_flux": pflux,
            "energy": energy,
            "power": power,
            "field_work": fwork,
            "interaction": inter,
            "quantum": qflux + pn_bal,
            "quantum_flux": qflux,
            "quantum_nonlocal": pn_bal,
            "boundary_flux": je_edge,
            "absorbed": absorbed,
            "pn_direct": pn_direct,
            "pn_direct_minus_balance": pn_direct - pn_bal,
        }
    return Frame(t=float(t), fields=fields, volumes=volumes, globals=glob)


#: Terms of a sharp volume that :func:`edge_terms` gives (the edge values of frame's volumes).
EDGE_TERMS = ("quantum_flux", "boundary_flux", "particle_flux")


def edge_terms(psi: np.ndarray, model: Any, t: float, setup: FrameSetup) -> dict[str, dict[str, float]]:
    """P_S, P_B and the particle flux of every sharp volume at time ``t``, from the edge slices alone.

    The same numbers as ``frame(psi, model, t, setup=setup).volumes[name][term]`` for the sharp
    volumes (to round-off), at a fraction of its cost: no fine marginals, no H_eff Psi on the grid.
    Per electron axis k, Psi, d_k Psi, d_k^2 Psi, Phi and d_k Phi are contracted along k onto the
    edge points (:meth:`FrameSetup.edge_slices`, one pass over Psi and one over its potential part),
    then refined and summed as in :func:`frame`. The exact solver evaluates these on the window
    nodes of ``numerics.edge_node_phase``, finer than the full evaluations' nodes: j_E and L are
    ratios by rho and vary on the time scale of a near-node crossing the edge.

    Returns
    -------
    dict
        Per sharp volume name, ``EDGE_TERMS`` [particle_flux: 1/time; the others: hartree/time].
    """
    s = setup
    n_edges = s.edge_pos.shape[0]
    if not n_edges:
        return {}
    psi = np.ascontiguousarray(psi, dtype=complex)
    n, n_p = s.n, s.n_p
    axes, weight = _marginal_axes(model, n_p)
    drive_1d = s.drive_1d(model, t)
    edge_qphi = s.edge_drive(model, t, drive_1d)
    _, rho_max = _obs_kernels.abs2_sum_max_nb(psi.reshape(-1, n))
    rho_floor = _density_cutoff(model) * rho_max
    _potential_times(s, psi, drive_1d)
    sums = np.zeros((3, n_edges))
    for k in axes:
        vals = s.edge_slices(psi, s.Q, k)
        sums += np.array(s.edge_densities(edge_qphi, rho_floor, vals))
    sums *= weight * s.dx ** (n_p - 1)
    je, lk, jk = sums
    vals = s.edge_sign @ np.stack([lk, je, jk]).T  # (n_volumes, 3)
    out = {}
    for name, sharp, (l_edge, je_edge, j_edge) in zip(s.volume_names, s.edge_sharp, vals):
        if sharp:
            out[name] = {"quantum_flux": float(-l_edge), "boundary_flux": float(je_edge),
                         "particle_flux": float(j_edge)}
    return out
