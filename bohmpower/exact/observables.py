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
The work is done in slabs along a second axis, so the peak memory is a few N-d arrays.

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

from bohmpower.exact.hamiltonian import apply_hamiltonian, one_body_sum
from bohmpower.model.volume import quadrature_weights

__all__ = ["FIELD_NAMES", "GLOBAL_NAMES", "VOLUME_TERMS", "Frame", "frame"]

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
# Elements per slab of the fine-grid work: seven complex fine arrays of this size stay ~30 MB.
_SLAB_ELEMENTS = 1 << 18


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


def _pad(c: np.ndarray, axis: int) -> np.ndarray:
    """Unnormalised FFT ``c`` (n along ``axis``) zero-padded to 2n, Nyquist split, scaled so that the
    inverse FFT of the result gives the interpolant at the 2x refined points."""
    n = c.shape[axis]
    shape = list(c.shape)
    shape[axis] = 2 * n
    big = np.zeros(shape, dtype=complex)
    n_pos = (n + 1) // 2  # modes 0 .. n_pos - 1 are >= 0 (and < n/2)
    n_neg = n // 2  # modes -n_neg .. -1 (for even n, -n/2 is the Nyquist)

    def ix(sl: slice) -> tuple:
        out = [slice(None)] * c.ndim
        out[axis] = sl
        return tuple(out)

    big[ix(slice(0, n_pos))] = c[ix(slice(0, n_pos))]
    big[ix(slice(2 * n - n_neg, 2 * n))] = c[ix(slice(n - n_neg, n))]
    if n % 2 == 0:
        half = 0.5 * c[ix(slice(n // 2, n // 2 + 1))]
        big[ix(slice(n // 2, n // 2 + 1))] = half  # +N
        big[ix(slice(2 * n - n // 2, 2 * n - n // 2 + 1))] = half  # -N
    big *= 2.0  # ifft normalises by 1/(2n); the interpolant needs 1/n
    return big


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
# Model access (duck-typed: any object with the Model attributes of docs/design.md).


@dataclass
class _Setup:
    n: int
    n_p: int
    dx: float
    x: np.ndarray
    kx: np.ndarray
    xf: np.ndarray
    kf: np.ndarray
    mass: float
    chi: bool
    w: Any
    dw: Any
    u0: np.ndarray
    gamma: np.ndarray
    absorbing: bool
    u0_f: np.ndarray
    gamma_f: np.ndarray
    drive_1d: np.ndarray | None
    qphi_f: np.ndarray
    qe_f: np.ndarray
    qdtphi_f: np.ndarray
    cutoff: float


def _fine_values(model: Any, name: str, coarse: np.ndarray, xf: np.ndarray) -> np.ndarray:
    """A one-body potential at the fine points: the model's ``<name>_at(x)`` if it has one, else the
    trigonometric interpolant of the grid values (exact for band-limited potentials)."""
    fn = getattr(model, f"{name}_at", None)
    if callable(fn):
        return np.asarray(fn(xf), dtype=float)
    return _refine_1d(coarse)


def _setup(psi: np.ndarray, model: Any, t: float) -> _Setup:
    grid = model.grid
    n = int(grid.n_x)
    n_p = int(model.n_particles)
    if psi.ndim != n_p or psi.shape != (n,) * n_p:
        raise ValueError(f"psi has shape {psi.shape}, expected {(n,) * n_p}")
    x = np.asarray(grid.x, dtype=float)
    dx = float(grid.dx)
    kx = np.asarray(grid.k, dtype=float)
    xf = float(grid.x_min) + 0.5 * dx * np.arange(2 * n)
    kf = 2.0 * np.pi * np.fft.fftfreq(2 * n, d=0.5 * dx)
    inter = getattr(model, "interaction", None)
    if inter is None or getattr(inter, "kind", "none") == "none":
        w = dw = None
    else:
        w, dw = inter.w, inter.dw
    u0 = np.asarray(model.u0, dtype=float)
    gamma = getattr(model, "gamma", None)
    gamma = np.zeros(n) if gamma is None else np.asarray(gamma, dtype=float)
    absorbing = bool(np.any(gamma != 0.0))
    u0_f = _fine_values(model, "u0", u0, xf)
    gamma_f = _fine_values(model, "gamma", gamma, xf) if absorbing else np.zeros(2 * n)

    drives = getattr(model, "drives", None)
    qphi_f = np.zeros(2 * n)
    qe_f = np.zeros(2 * n)
    qdtphi_f = np.zeros(2 * n)
    if drives is not None:
        for d in drives:
            f_t, df_t = float(d.profile(t)), float(d.profile_dt(t))
            g = np.asarray(d.potential(xf), dtype=float)
            qphi_f += f_t * g
            qdtphi_f += df_t * g
            qe_f += f_t * np.asarray(d.force(xf), dtype=float)
        drive_1d = np.asarray(model.drive_potential(t), dtype=float) if len(drives) else None
    else:
        drive_1d = None
        if hasattr(model, "drive_potential"):
            drive_1d = np.asarray(model.drive_potential(t), dtype=float)
            qphi_f = _refine_1d(drive_1d)
            qe_f = _refine_1d(model.drive_force(t))
            qdtphi_f = _refine_1d(model.drive_potential_dt(t))

    cutoff = _DEFAULT_CUTOFF
    cfg = getattr(model, "config", None)
    num = getattr(cfg, "numerics", None)
    if num is not None and getattr(num, "density_cutoff", None) is not None:
        cutoff = float(num.density_cutoff)
    return _Setup(
        n=n, n_p=n_p, dx=dx, x=x, kx=kx, xf=xf, kf=kf, mass=float(model.mass),
        chi=bool(getattr(model, "include_drive_potential", False)), w=w, dw=dw, u0=u0, gamma=gamma,
        absorbing=absorbing, u0_f=u0_f, gamma_f=gamma_f, drive_1d=drive_1d, qphi_f=qphi_f, qe_f=qe_f,
        qdtphi_f=qdtphi_f, cutoff=cutoff,
    )


def _safe_ratio(num: np.ndarray, rho: np.ndarray, floor: float) -> np.ndarray:
    """num / rho where rho >= floor, 0 elsewhere (SPEC.md density cutoff)."""
    ok = rho >= floor
    out = np.zeros_like(num)
    np.divide(num, rho, out=out, where=ok)
    return out


# ---------------------------------------------------------------------------------------------------
# Per-axis marginals on the 2x grid


_MARGS = ("rho", "j", "erho", "g", "h1", "pot_p", "je", "l", "sc", "a")


def _axis_marginals(
    psi: np.ndarray,
    phi: np.ndarray,
    dpsi: dict[int, np.ndarray],
    k: int,
    s: _Setup,
    rho_floor: float,
    workers: int,
    store_d1: np.ndarray | None,
    store_d2: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Fine marginals (2n,) along axis k of the N-d densities listed in the module Notes.

    Also fills ``store_d1``/``store_d2`` with d_k Psi and d_k^2 Psi on the original grid (the even fine
    points), shape (n,)*N, when given.
    """
    n, n_p, m = s.n, s.n_p, s.mass
    acc = {name: np.zeros(2 * n) for name in _MARGS}
    others = tuple(a for a in range(n_p) if a != k)
    weight = s.dx ** (n_p - 1)
    # Fine-grid wavenumbers (the split Nyquist sits at +N and -N, each differentiated as such).
    ik = _along(1j * s.kf, n_p, k)
    k2 = _along(-(s.kf**2), n_p, k)
    xk_f = _along(s.xf, n_p, k)
    u0_k = _along(s.u0_f, n_p, k)
    chunk_axis = others[0] if others else None
    if chunk_axis is None:
        slabs = [slice(None)]
    else:
        per = max(1, _SLAB_ELEMENTS // max(1, psi.size // n))
        slabs = [slice(i, min(i + per, n)) for i in range(0, n, per)]
    even = [slice(None)] * n_p
    even[k] = slice(0, None, 2)
    even = tuple(even)

    for sl in slabs:
        index = [slice(None)] * n_p
        if chunk_axis is not None:
            index[chunk_axis] = sl
        index = tuple(index)

        def xcoord(j: int, sl: slice = sl) -> np.ndarray:
            xj = s.x[sl] if j == chunk_axis else s.x
            return _along(xj, n_p, j)

        def gcoord(j: int, sl: slice = sl) -> np.ndarray:
            gj = s.gamma[sl] if j == chunk_axis else s.gamma
            return _along(gj, n_p, j)

        a_hat = _pad(sfft.fft(psi[index], axis=k, workers=workers), k)
        p0 = sfft.ifft(a_hat, axis=k, workers=workers)
        p1 = sfft.ifft(a_hat * ik, axis=k, workers=workers)
        p2 = sfft.ifft(a_hat * k2, axis=k, workers=workers, overwrite_x=True)
        del a_hat
        b_hat = _pad(sfft.fft(phi[index], axis=k, workers=workers), k)
        f0 = sfft.ifft(b_hat, axis=k, workers=workers)
        f1 = sfft.ifft(b_hat * ik, axis=k, workers=workers, overwrite_x=True)
        del b_hat

        # One-body potential of h_k on the fine points plus the half-shared interaction.
        v_k = u0_k + (s.chi * _along(s.qphi_f, n_p, k))
        if s.w is not None:
            for j in others:
                v_k = v_k + 0.5 * s.w(xk_f - xcoord(j))

        rho = p0.real**2 + p0.imag**2
        cp1 = np.conj(p0) * p1
        jk = cp1.imag / m
        drho = 2.0 * cp1.real
        del cp1
        erho = -0.5 / m * (np.conj(p0) * p2).real + v_k * rho
        if store_d1 is not None:
            store_d1[index] = p1[even]
            store_d2[index] = p2[even]
        del p2
        cpf = np.conj(p0) * f0
        dtrho = 2.0 * cpf.imag
        g = (np.conj(p0) * f1 + np.conj(p1) * f0).imag  # (1/2) d_k d_t rho
        h1 = (np.conj(p1) * f1).imag
        del f0, f1
        pot_p = 2.0 * v_k * cpf.imag
        del cpf
        je = _safe_ratio(jk * erho, rho, rho_floor)
        lk = 0.25 / m * (_safe_ratio(drho * dtrho, rho, rho_floor) - 2.0 * g)
        del drho, dtrho

        sc = None
        if s.dw is not None:
            for j in others:
                dj = sfft.ifft(
                    _pad(sfft.fft(dpsi[j][index], axis=k, workers=workers), k), axis=k, workers=workers
                )
                jj = (np.conj(p0) * dj).imag / m
                del dj
                term = 0.5 * (-s.dw(xk_f - xcoord(j))) * (jk + jj)
                sc = term if sc is None else sc + term
        a = None
        if s.absorbing:
            gam = _along(s.gamma_f, n_p, k)
            for j in others:
                gam = gam + gcoord(j)
            a = 2.0 * gam * erho

        def red(arr: np.ndarray) -> np.ndarray:
            return np.sum(arr, axis=others) * weight if others else arr

        acc["rho"] += red(rho)
        acc["j"] += red(jk)
        acc["erho"] += red(erho)
        acc["g"] += red(g)
        acc["h1"] += red(h1)
        acc["pot_p"] += red(pot_p)
        acc["je"] += red(je)
        acc["l"] += red(lk)
        if sc is not None:
            acc["sc"] += red(sc)
        if a is not None:
            acc["a"] += red(a)
    return acc


# ---------------------------------------------------------------------------------------------------
# Direct P_N on the original grid (diagnostic)


def _marg_coarse(arr: np.ndarray, k: int, dx: float) -> np.ndarray:
    others = tuple(a for a in range(arr.ndim) if a != k)
    return np.sum(arr, axis=others) * dx ** (arr.ndim - 1) if others else arr


def _pn_direct_marginal(
    psi: np.ndarray,
    rho: np.ndarray,
    d1: dict[int, np.ndarray],
    d2: dict[int, np.ndarray],
    dpsi: dict[int, np.ndarray],
    axes: list[int],
    s: _Setup,
    rho_floor: float,
    workers: int,
) -> np.ndarray:
    """Original-grid marginal (n,) of the direct P_N integrand (module Notes), before the 1/N weight.

    Notes
    -----
    Relabelling the second half of the sum, P_N = sum_{k != j} int dx^N (Theta(x_k) - Theta(x_j)) X_kj
    with X_kj = rho v_j d_j Q_k, so the marginal is sum over ordered pairs of marg_k X_kj - marg_j X_kj.
    d_j Q_k is taken from ratios of mixed spectral derivatives of Psi (smooth), never by differentiating
    Q_k (which the density cutoff makes discontinuous):

        d_j Q_k = -(1/2m) Re[psi_kkj/psi - (psi_kk/psi)(psi_j/psi)] - m v_k d_j v_k,
        d_j v_k = (1/m) Im[psi_kj/psi - (psi_k/psi)(psi_j/psi)].

    For fermions only k = 0 is summed (the caller multiplies by N, as for every marginal).
    """
    n_p, m = s.n_p, s.mass
    out = np.zeros(s.n)
    if n_p < 2:
        return out
    cpsi = np.conj(psi)

    def ratio(a: np.ndarray) -> np.ndarray:
        return _safe_ratio(cpsi * a, rho.astype(complex), rho_floor)

    for k in axes:
        r_k = ratio(d1[k])
        r_kk = ratio(d2[k])
        v_k = r_k.imag / m
        for j in range(n_p):
            if j == k:
                continue
            d_j = dpsi[j] if j in dpsi else _deriv(psi, s.kx, j, workers)
            r_j = ratio(d_j)
            del d_j
            r_kj = ratio(_deriv(d1[k], s.kx, j, workers))
            r_kkj = ratio(_deriv(d2[k], s.kx, j, workers))
            dv = (r_kj - r_k * r_j).imag / m
            dq = -0.5 / m * (r_kkj - r_kk * r_j).real - m * v_k * dv
            x_kj = rho * (r_j.imag / m) * dq
            out += _marg_coarse(x_kj, k, s.dx) - _marg_coarse(x_kj, j, s.dx)
    return out


# ---------------------------------------------------------------------------------------------------


def frame(
    psi: np.ndarray, model: Any, t: float, workers: int = 1, diagnostics: bool = True
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
        Threads for scipy.fft.
    diagnostics : bool
        Compute ``pn_direct`` and ``pn_direct_minus_balance`` (about a fifth of the cost for N = 2);
        when False they are NaN. Every reported term is computed either way.

    Returns
    -------
    Frame
        See the module Notes for every formula.
    """
    psi = np.asarray(psi)
    if not np.iscomplexobj(psi):
        psi = psi.astype(complex)
    s = _setup(psi, model, t)
    n_p, m = s.n_p, s.mass
    fermion = getattr(model, "statistics", "fermion") == "fermion"
    w_for_h = s.w

    phi = apply_hamiltonian(psi, s.x, s.kx, m, s.u0, w_for_h, drive_1d=s.drive_1d, workers=workers)
    if s.absorbing:
        phi -= 1j * one_body_sum(s.gamma, n_p) * psi

    rho_c = psi.real**2 + psi.imag**2
    rho_floor = s.cutoff * float(rho_c.max())
    axes = [0] if fermion else list(range(n_p))
    weight = float(n_p) if fermion else 1.0
    need_d = sorted({j for k in axes for j in range(n_p) if j != k}) if s.dw is not None else []
    dpsi = {j: _deriv(psi, s.kx, j, workers) for j in need_d}

    d1: dict[int, np.ndarray] = {}
    d2: dict[int, np.ndarray] = {}
    total = {name: np.zeros(2 * s.n) for name in _MARGS}
    for k in axes:
        if n_p >= 2 and diagnostics:
            d1[k] = np.empty(psi.shape, dtype=complex)
            d2[k] = np.empty(psi.shape, dtype=complex)
        acc = _axis_marginals(psi, phi, dpsi, k, s, rho_floor, workers, d1.get(k), d2.get(k))
        for name in _MARGS:
            total[name] += acc[name]
    del phi
    for name in _MARGS:
        total[name] *= weight

    if diagnostics:
        pn = _pn_direct_marginal(psi, rho_c, d1, d2, dpsi, axes, s, rho_floor, workers)
        pn_f = _refine_1d(weight * pn)
    else:
        pn_f = np.full(2 * s.n, np.nan)
    del d1, d2, dpsi

    # Assemble the fine marginals.
    kf = s.kf
    n_f = total["rho"]
    j_f = total["j"]
    eps_f = total["erho"]
    kin_p = -0.5 / m * (_deriv(total["g"], kf, 0, 1) - 2.0 * total["h1"])
    p_f = kin_p + total["pot_p"] + (s.qdtphi_f * n_f if s.chi else 0.0)
    fw_f = s.qdtphi_f * n_f if s.chi else s.qe_f * j_f
    sc_f = total["sc"]
    je_f = total["je"]
    l_f = total["l"]
    a_f = total["a"]
    quantum_f = p_f + _deriv(je_f, kf, 0, 1) - fw_f - sc_f + a_f

    h = 0.5 * s.dx
    norm = float(rho_c.sum()) * s.dx**n_p
    glob = {
        "norm": norm,
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

    # Volume values: integrals are dot products with quadrature weights (model.volume).
    theta_rows = np.stack([n_f, eps_f, p_f, fw_f, sc_f, a_f, pn_f])
    edge_rows = np.stack([j_f, l_f, je_f])
    volumes: dict[str, dict[str, float]] = {}
    for vol in getattr(model, "volumes", ()) or ():
        w_th, w_edge = quadrature_weights(s.xf, 2 * s.n, vol)
        parts, energy, power, fwork, inter, absorbed, pn_direct = theta_rows @ w_th
        pflux, l_edge, je_edge = edge_rows @ w_edge
        qflux = -l_edge
        pn_bal = power - fwork - inter - qflux - je_edge + absorbed
        volumes[vol.name] = {
            "particles": float(parts),
            "particle_flux": float(pflux),
            "energy": float(energy),
            "power": float(power),
            "field_work": float(fwork),
            "interaction": float(inter),
            "quantum": float(qflux + pn_bal),
            "quantum_flux": float(qflux),
            "quantum_nonlocal": float(pn_bal),
            "boundary_flux": float(je_edge),
            "absorbed": float(absorbed),
            "pn_direct": float(pn_direct),
            "pn_direct_minus_balance": float(pn_direct - pn_bal),
        }
    return Frame(t=float(t), fields=fields, volumes=volumes, globals=glob)
