"""Guidance of conditional-wavefunction (CW) worlds: initial CWs, velocities, quantum potentials, energies.

A world is one configuration X = (X_0, ..., X_{N-1}) [bohr]; a block of B worlds carries the array
``psi`` of shape (B, C, M) (M = n_x grid points) of its conditional wavefunctions, CW c belonging to
electron ``owner[c]`` (THEORY.md section 4, zeroth order).

Layouts
-------
without exchange  C = N, owner = arange(N): psi[b, a] = psi_a(x) = Psi0(X_0..x..X_{N-1}) at t = 0
                  (up to a constant: each CW is normalised to sum |psi|^2 dx = 1, which changes neither
                  v_a nor Q_a);
with exchange     C = N*N, owner = repeat(arange(N), N): psi[b, a*N + j] = phi^a_j, electron a's copy
                  of orbital j (Alarcon et al., J. Phys.: Condens. Matter 25, 325601 (2013)).

Equations (hbar = 1)
--------------------
Initial slice of a Slater determinant through the world (no N-dimensional array):

.. math::

    \\psi_a(x) = \\sum_j \\phi_j(x)\\, \\mathrm{cof}(A)_{aj}, \\qquad A_{kj} = \\phi_j(X_k),

with phi_j(X_k) from the trigonometric interpolant of the grid orbitals; the cofactors come from the SVD,
adj(A) = det(U) det(V^H) V diag(prod_{i != j} s_i) U^H, which stays finite when A is singular.

Guidance ratios r1_a = d_a Psi / Psi, r2_a = d_a^2 Psi / Psi at X_a:

- without exchange r1_a = psi_a'(X_a) / psi_a(X_a), r2_a = psi_a''(X_a) / psi_a(X_a);
- with exchange, A^a_kj = phi^a_j(X_k) (rows: electrons, columns: orbitals) and z^a solves
  A^a z^a = e_a (one small LU solve per electron, no inverse), so that [(A^a)^{-1}]_{ja} = z^a_j and

.. math::

    r1_a = \\sum_j z^a_j\\, \\phi^{a\\prime}_j(X_a), \\qquad r2_a = \\sum_j z^a_j\\, \\phi^{a\\prime\\prime}_j(X_a).

Then v_a = Im(r1_a)/m and Q_a = -Re(r2_a)/(2m) - m v_a^2/2 (never by differentiating |psi|), and

.. math::

    e_a = \\frac{m v_a^2}{2} + Q_a + U_0(X_a) + \\frac12 \\sum_{b \\ne a} W(X_a - X_b)
          \\;[+\\, q\\phi(X_a, t),\\ \\chi = 1],

    F_{ab} = -W'(X_a - X_b), \\quad c_a = \\frac12 \\sum_{b\\ne a} F_{ab}(v_a + v_b), \\quad
    f_a = qE(X_a, t) v_a \\;[\\chi = 1:\\ q\\,\\partial_t\\phi(X_a, t)], \\quad
    \\Gamma_{tot} = \\sum_a \\Gamma(X_a).

Off-grid potentials
-------------------
U0 and U0' at X come from the local 8-point Lagrange interpolant of the grid values (periodic wrap). Why: the CWs feel U0 and Gamma only through their grid samples, so that interpolant is the
potential the trajectories move in; U0 and U0' come from one function, consistent even for sharp
barriers that have no analytic derivative (the quantum force read off the acceleration needs exactly
that U0'); and the exact Bohmian guide (exact.trajectories) uses the same stencil, so CW-versus-exact
comparisons carry no difference in how U0 is represented. Gamma (only needed as a value, for the
weights) comes from the model's analytic ``gamma_at``: the layer's Gamma has kinks (at its inner edge and
at the periodic seam, where the two layers meet) that a stencil smears, by up to ~1% of its peak near the
seam on a 256-point grid; the grid interpolant is the fallback when no callable is given. The drive (q phi, q E, q d_t phi) is taken from
each Drive's analytic ``potential(x)``, ``force(x)``, ``profile(t)``, ``profile_dt(t)``, and the pair
interaction from ``Interaction.w/dw`` (smooth, known everywhere).

Relative density (health)
-------------------------
rho_rel_a = |psi_a(X_a)|^2 / max_x |psi_a(x)|^2 on the grid; with exchange psi_a(x) / psi_a(X_a) =
sum_j z^a_j phi^a_j(x), so rho_rel_a = 1 / max_x |sum_j z^a_j phi^a_j(x)|^2 (no determinant needed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from bohmpower.errors import ConfigError
from bohmpower.model.grid import uniform_grid

__all__ = [
    "LAGRANGE_ORDER",
    "PointPotentials",
    "cofactors",
    "exchange_ratios",
    "guidance_ratios",
    "health_measures",
    "initial_conditional_wavefunctions",
    "lagrange_interpolate",
    "layout",
    "plain_ratios",
    "points_for",
    "relative_density",
    "trig_interpolate",
    "velocity_and_quantum_potential",
]

logger = logging.getLogger(__name__)

#: Points of the local Lagrange stencil for U0, U0' and Gamma off the grid (as exact.trajectories).
LAGRANGE_ORDER = 8
#: Elements of the largest temporary (points x grid) built at once by the interpolants.
_CHUNK_ELEMENTS = 1 << 22


# ---------------------------------------------------------------------------------------- layout
def layout(n_particles: int, exchange: bool) -> np.ndarray:
    """Owner of each CW: arange(N) without exchange, repeat(arange(N), N) with exchange.

    Returns
    -------
    ndarray of int, shape (C,)
        C = N without exchange, N*N with it; CW c = a*N + j is electron a's copy of orbital j.
    """
    n = int(n_particles)
    if n < 1:
        raise ValueError(f"n_particles must be >= 1, got {n_particles}")
    return np.repeat(np.arange(n), n) if exchange else np.arange(n)


# ---------------------------------------------------------------------------------------- interpolation
def _grid_params(x: np.ndarray) -> tuple[float, float, int]:
    return uniform_grid(x)


def trig_interpolate(f: np.ndarray, x: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Trigonometric (band-limited) interpolant of periodic grid functions at arbitrary points.

    Parameters
    ----------
    f : ndarray, shape (n_f, n_x), complex or real
        Functions on the uniform periodic grid ``x``.
    x : ndarray, shape (n_x,)
        Grid [bohr]; the cell is [x[0], x[0] + n_x dx).
    points : ndarray, shape (P,)
        Positions [bohr] (any real numbers: periodic).

    Returns
    -------
    ndarray, complex, shape (P, n_f)

    Notes
    -----
    f(y) = sum_m c_m exp(i k_m (y - x_0)), c = fft(f)/n_x; the Nyquist mode (even n_x) enters as
    c_{n/2} cos(k_{n/2} (y - x_0)), the symmetric choice that is real for real f and exact on the grid.
    """
    x0, dx, n_x = _grid_params(x)
    f = np.atleast_2d(np.asarray(f))
    coef = np.fft.fft(f, axis=-1) / n_x  # (n_f, n_x)
    k = 2.0 * np.pi * np.fft.fftfreq(n_x, d=dx)
    points = np.asarray(points, dtype=float).ravel()
    out = np.empty((points.size, f.shape[0]), dtype=complex)
    chunk = max(1, _CHUNK_ELEMENTS // n_x)
    for s in range(0, points.size, chunk):
        y = points[s : s + chunk] - x0
        e = np.exp(1j * np.multiply.outer(y, k))
        if n_x % 2 == 0:
            e[:, n_x // 2] = np.cos(k[n_x // 2] * y)
        out[s : s + chunk] = e @ coef.T
    return out


def _lagrange_weights(u: np.ndarray, order: int, deriv: bool) -> np.ndarray:
    """Weights l_m(u) (or l_m'(u)) of the nodes 0..order-1 at local coordinates u, shape (P, order)."""
    nodes = np.arange(order, dtype=float)
    diff = u[:, None] - nodes[None, :]  # (P, order): u - n
    denom = np.array([np.prod([m - n for n in range(order) if n != m]) for m in range(order)])
    w = np.empty((u.size, order))
    for m in range(order):
        others = np.delete(np.arange(order), m)
        if not deriv:
            w[:, m] = np.prod(diff[:, others], axis=1)
        else:
            # d/du prod_{n != m} (u - n) = sum_l prod_{n != m, l} (u - n)
            acc = np.zeros(u.size)
            for ll in others:
                rest = others[others != ll]
                acc += np.prod(diff[:, rest], axis=1)
            w[:, m] = acc
    return w / denom


def lagrange_interpolate(
    f: np.ndarray, x_min: float, dx: float, points: np.ndarray, order: int = LAGRANGE_ORDER,
    deriv: bool = False,
) -> np.ndarray:
    """Local periodic Lagrange interpolation of one real grid function (and its derivative).

    Parameters
    ----------
    f : ndarray, shape (n_x,)
        Values on x_i = x_min + i dx (periodic).
    x_min, dx : float
        Grid origin and spacing [bohr].
    points : ndarray, any shape
        Positions [bohr]; non-finite ones give NaN.
    order : int
        Stencil points (even); error O(dx^order) for smooth f.
    deriv : bool
        Return the derivative of the interpolating polynomial [f units / bohr].

    Returns
    -------
    ndarray, shape of ``points``
    """
    f = np.asarray(f, dtype=float)
    n_x = f.shape[0]
    pts = np.asarray(points, dtype=float)
    flat = pts.ravel()
    out = np.full(flat.shape, np.nan)
    ok = np.isfinite(flat)
    s = (flat[ok] - x_min) / dx
    base = np.floor(s).astype(np.int64) - (order // 2 - 1)
    u = s - base
    w = _lagrange_weights(u, order, deriv)
    idx = np.mod(base[:, None] + np.arange(order)[None, :], n_x)
    val = np.sum(w * f[idx], axis=1)
    out[ok] = val / dx if deriv else val
    return out.reshape(pts.shape)


# ---------------------------------------------------------------------------------------- initial CWs
def cofactors(a: np.ndarray) -> np.ndarray:
    """Cofactor matrices of a stack of square matrices, up to one positive scale per matrix.

    Parameters
    ----------
    a : ndarray, shape (..., N, N), complex

    Returns
    -------
    ndarray, shape (..., N, N)
        cof(A)_{kj} / s_max^(N-1) (s_max the largest singular value), finite also for singular A.

    Notes
    -----
    With A = U S V^H: adj(A) = det(U) det(V^H) V diag(prod_{i != j} s_i) U^H and cof(A) = adj(A)^T.
    """
    a = np.asarray(a, dtype=complex)
    n = a.shape[-1]
    if n == 1:
        return np.ones_like(a)
    u, s, vh = np.linalg.svd(a)
    smax = s[..., :1]
    sn = np.where(smax > 0, s / np.where(smax > 0, smax, 1.0), 0.0)
    # prod_{i != j} s_i without dividing by a possibly zero s_j
    p = np.empty_like(sn)
    for j in range(n):
        p[..., j] = np.prod(np.delete(sn, j, axis=-1), axis=-1)
    phase = np.linalg.det(u) * np.linalg.det(vh)
    adj = np.einsum("...ij,...j,...jk->...ik", np.conj(np.swapaxes(vh, -1, -2)), p,
                    np.conj(np.swapaxes(u, -1, -2)))
    adj *= phase[..., None, None]
    return np.swapaxes(adj, -1, -2)


def initial_conditional_wavefunctions(
    orbitals: np.ndarray, x: np.ndarray, X: np.ndarray, statistics: str, exchange: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Initial CWs of B worlds (module Layouts), shape (B, C, n_x).

    Parameters
    ----------
    orbitals : ndarray, shape (N, n_x), complex
        Initial orbitals phi_j on the grid (Model.orbitals, normalised).
    x : ndarray, shape (n_x,)
        Grid [bohr].
    X : ndarray, shape (B, N)
        Sampled positions [bohr] (column k: electron k).
    statistics : {"fermion", "distinguishable"}
    exchange : bool
        One copy of the N orbitals per electron (fermions only).

    Returns
    -------
    psi : ndarray, complex, shape (B, C, n_x)
        Without exchange each CW normalised to sum |psi|^2 dx = 1 (a zero CW, from a Slater matrix of
        rank < N - 1, is left zero: the health check reports it); with exchange the orbitals as given.
    owner : ndarray of int, shape (C,)

    Raises
    ------
    ConfigError
        ("method.exchange") exchange with distinguishable electrons.
    """
    orbitals = np.asarray(orbitals, dtype=complex)
    X = np.asarray(X, dtype=float)
    if orbitals.ndim != 2:
        raise ValueError(f"orbitals must have shape (N, n_x), got {orbitals.shape}")
    n, n_x = orbitals.shape
    if X.ndim != 2 or X.shape[1] != n:
        raise ValueError(f"X must have shape (B, {n}), got {X.shape}")
    if statistics not in ("fermion", "distinguishable"):
        raise ConfigError("particles.statistics", f"unknown {statistics!r}")
    if exchange and statistics != "fermion":
        raise ConfigError("method.exchange", "exchange = true needs statistics = 'fermion'")
    owner = layout(n, exchange)
    n_b = X.shape[0]
    if exchange:
        psi = np.empty((n_b, n * n, n_x), dtype=complex)
        psi[:] = np.tile(orbitals, (n, 1))[None]
        return psi, owner
    if statistics == "distinguishable" or n == 1:
        psi = np.empty((n_b, n, n_x), dtype=complex)
        psi[:] = orbitals[None]
    else:
        # A[b, k, j] = phi_j(X[b, k]) from the trigonometric interpolant
        a = trig_interpolate(orbitals, x, X.ravel()).reshape(n_b, n, n)
        cof = cofactors(a)  # cof[b, a, j]
        psi = np.einsum("baj,jm->bam", cof, orbitals)
    dx = _grid_params(x)[1]
    norm = np.sqrt(np.sum(np.abs(psi) ** 2, axis=-1) * dx)
    psi /= np.where(norm > 0, norm, 1.0)[..., None]
    return psi, owner


# ---------------------------------------------------------------------------------------- guidance
def plain_ratios(values: np.ndarray, d1: np.ndarray, d2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """r1 = psi'/psi and r2 = psi''/psi of each CW at its own electron (no exchange).

    Parameters
    ----------
    values, d1, d2 : ndarray, complex, shape (B, N) or (B, N, 1)
        psi_a, psi_a', psi_a'' at X_a [bohr^-1/2, ^-3/2, ^-5/2 up to the CW's scale].

    Returns
    -------
    r1 [1/bohr], r2 [1/bohr^2] : ndarray, complex, shape (B, N)
        Non-finite where psi_a(X_a) = 0.
    """
    values, d1, d2 = (np.asarray(a).reshape(a.shape[0], -1) for a in (values, d1, d2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return d1 / values, d2 / values


def exchange_ratios(
    values: np.ndarray, d1: np.ndarray, d2: np.ndarray, n_particles: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """d_a Psi / Psi and d_a^2 Psi / Psi from each electron's own Slater determinant (exchange layout).

    Parameters
    ----------
    values, d1, d2 : ndarray, complex, shape (B, N*N, N)
        phi^a_j and its x-derivatives at every electron's position: entry [b, a*N + j, k] at X[b, k].
    n_particles : int
        N.

    Returns
    -------
    r1, r2 : ndarray, complex, shape (B, N)
        sum_j z^a_j phi^a_j'(X_a), sum_j z^a_j phi^a_j''(X_a) [1/bohr, 1/bohr^2].
    z : ndarray, complex, shape (B, N, N)
        z[b, a] solves A^a z = e_a, A^a_kj = phi^a_j(X_k); NaN where A^a is exactly singular.

    Notes
    -----
    One batched LU solve with a single right-hand side per electron; when LAPACK reports an exactly
    singular matrix the batch is redone matrix by matrix and only the singular ones get NaN.
    """
    n = int(n_particles)
    n_b = values.shape[0]
    if values.shape != (n_b, n * n, n):
        raise ValueError(f"values must have shape (B, {n * n}, {n}), got {values.shape}")
    # [b, a, j, k] -> A^a[k, j]
    amat = np.swapaxes(values.reshape(n_b, n, n, n), -1, -2)
    rhs = np.broadcast_to(np.eye(n, dtype=complex)[None, :, :, None], (n_b, n, n, 1))
    try:
        z = np.linalg.solve(amat, rhs)[..., 0]
    except np.linalg.LinAlgError:
        z = np.empty((n_b, n, n), dtype=complex)
        for b in range(n_b):
            for a in range(n):
                try:
                    z[b, a] = np.linalg.solve(amat[b, a], rhs[b, a, :, 0])
                except np.linalg.LinAlgError:
                    z[b, a] = np.nan
    diag = np.arange(n)
    # derivative of orbital j of set a at X_a: d1[b, a*N + j, a]
    d1a = d1.reshape(n_b, n, n, n)[:, diag, :, diag].transpose(1, 0, 2)  # (B, N(a), N(j))
    d2a = d2.reshape(n_b, n, n, n)[:, diag, :, diag].transpose(1, 0, 2)
    r1 = np.einsum("baj,baj->ba", z, d1a)
    r2 = np.einsum("baj,baj->ba", z, d2a)
    return r1, r2, z


def velocity_and_quantum_potential(
    r1: np.ndarray, r2: np.ndarray, mass: float
) -> tuple[np.ndarray, np.ndarray]:
    """v = Im(r1)/m [bohr / a.u. time] and Q = -Re(r2)/(2m) - m v^2/2 [hartree], shapes of r1."""
    v = np.imag(r1) / mass
    q = -np.real(r2) / (2.0 * mass) - 0.5 * mass * v * v
    return v, q


def relative_density(
    psi: np.ndarray, values: np.ndarray | None = None, z: np.ndarray | None = None
) -> np.ndarray:
    """|psi_a(X_a)|^2 / max_x |psi_a(x)|^2 for every electron of every world (module Notes).

    Parameters
    ----------
    psi : ndarray, complex, shape (B, C, n_x)
    values : ndarray, shape (B, N) or (B, N, 1), optional
        psi_a(X_a) (no exchange).
    z : ndarray, shape (B, N, N), optional
        From :func:`exchange_ratios` (exchange layout, C = N*N).

    Returns
    -------
    ndarray, shape (B, N)
        In [0, ~1] (grid maximum); 0 where the CW vanishes or z is not finite.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if z is None:
            vals = np.asarray(values).reshape(psi.shape[0], -1)
            peak = np.max(np.abs(psi) ** 2, axis=-1)
            rel = np.abs(vals) ** 2 / peak
        else:
            n_b, n = z.shape[:2]
            g = np.einsum("baj,bajm->bam", z, psi.reshape(n_b, n, n, -1))
            rel = 1.0 / np.max(np.abs(g) ** 2, axis=-1)
    return np.where(np.isfinite(rel), rel, 0.0)


def health_measures(
    psi: np.ndarray, values: np.ndarray | None = None, z: np.ndarray | None = None,
    use_numba: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Norms of all CWs and the relative density of each electron, in one fused pass over psi.

    Parameters
    ----------
    psi : ndarray, complex, shape (B, C, n_x)
    values : ndarray, shape (B, N) or (B, N, 1), optional
        psi_a(X_a) (no exchange, C = N).
    z : ndarray, shape (B, N, N), optional
        From :func:`exchange_ratios` (exchange, C = N*N).
    use_numba : bool
        False runs the numpy twin.

    Returns
    -------
    norms : ndarray, shape (B, C)
        sum_x |psi_c(x)|^2 (times dx gives the norm) [1/bohr up to the CWs' scale].
    rel : ndarray, shape (B, N)
        As :func:`relative_density` (0 where not finite).
    """
    from . import _guidance_kernels as gk

    psi = np.ascontiguousarray(psi, dtype=np.complex128)
    n_b, n_c, _ = psi.shape
    if z is None:
        coef = np.ones((n_b, n_c, 1), dtype=np.complex128)
    else:
        coef = np.ascontiguousarray(z, dtype=np.complex128)
    norms = np.empty((n_b, n_c))
    peak = np.empty(coef.shape[:2])
    (gk.health_pass_nb if use_numba else gk.health_pass_np)(psi, coef, norms, peak)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if z is None:
            rel = np.abs(np.asarray(values).reshape(n_b, -1)) ** 2 / peak
        else:
            rel = 1.0 / peak
    return norms, np.where(np.isfinite(rel), rel, 0.0)


# ---------------------------------------------------------------------------------------- per electron
@dataclass(frozen=True)
class PointPotentials:
    """U0, U0', Gamma, the drive and the pair interaction at off-grid positions (module Notes).

    Attributes
    ----------
    x_min, dx : float
        Grid [bohr].
    u0, gamma : ndarray, shape (n_x,)
        Grid values [hartree] (interpolated with the Lagrange stencil).
    drives : tuple
        Objects with ``potential(x)``, ``force(x)``, ``profile(t)``, ``profile_dt(t)``.
    w, dw : callable or None
        W(r), W'(r), vectorised.
    include_drive_potential : bool
        chi.
    mass : float
    gamma_fn : callable or None
        Gamma(x) at arbitrary points [hartree] (Model.gamma_at); None: interpolate ``gamma``.
    """

    x_min: float
    dx: float
    u0: np.ndarray
    gamma: np.ndarray
    drives: tuple
    w: object
    dw: object
    include_drive_potential: bool
    mass: float
    gamma_fn: object = None

    @classmethod
    def from_model(cls, model) -> PointPotentials:
        """From a :class:`bohmpower.model.Model` (grid, u0, gamma, drives, interaction, chi, mass)."""
        inter = getattr(model, "interaction", None)
        w = dw = None
        if inter is not None and getattr(inter, "kind", "none") != "none":
            w, dw = inter.w, inter.dw
        gamma = getattr(model, "gamma", None)
        gamma = np.zeros(model.grid.n_x) if gamma is None else np.asarray(gamma, dtype=float)
        return cls(
            float(model.grid.x_min), float(model.grid.dx), np.asarray(model.u0, dtype=float), gamma,
            tuple(getattr(model, "drives", ()) or ()), w, dw,
            bool(getattr(model, "include_drive_potential", False)), float(model.mass),
            getattr(model, "gamma_at", None),
        )

    @property
    def absorbing(self) -> bool:
        """True when Gamma is non-zero somewhere."""
        return bool(np.any(self.gamma > 0))

    def gamma_at(self, X: np.ndarray) -> np.ndarray:
        """Gamma(X) >= 0 [hartree], shape of X (zeros without absorber)."""
        if not self.absorbing:
            return np.zeros(np.shape(X))
        if self.gamma_fn is not None:
            return np.asarray(self.gamma_fn(X), dtype=float)
        return np.maximum(lagrange_interpolate(self.gamma, self.x_min, self.dx, X), 0.0)

    def evaluate(self, X: np.ndarray, v: np.ndarray, Q: np.ndarray, t: float,
                 present: np.ndarray | None = None) -> dict:
        """Every per-electron quantity of the state at worlds X (module Equations).

        Parameters
        ----------
        X, v, Q : ndarray, shape (B, N)
            Positions [bohr], velocities [bohr / a.u. time], quantum potentials [hartree].
        t : float
            Time [a.u. time] (drive).
        present : ndarray of bool, shape (B, N), optional
            Electrons that exist (an open system's worlds hold different numbers, padded to N):
            pairs with an absent electron carry no energy or force. None: all.

        Returns
        -------
        dict
            e, field_force, field_power, pair_force, pair_power, du0 (B, N) and gamma_total (B,).
        """
        m = self.mass
        u0 = lagrange_interpolate(self.u0, self.x_min, self.dx, X)
        du0 = lagrange_interpolate(self.u0, self.x_min, self.dx, X, deriv=True)
        e = 0.5 * m * v * v + Q + u0
        n = X.shape[1]
        pair_force = np.zeros_like(X)
        pair_power = np.zeros_like(X)
        if self.w is not None and n > 1:
            r = X[:, :, None] - X[:, None, :]
            off = ~np.eye(n, dtype=bool)
            if present is not None:
                off = off & present[:, :, None] & present[:, None, :]
            e = e + 0.5 * np.sum(np.where(off, self.w(r), 0.0), axis=2)
            F = np.where(off, -self.dw(r), 0.0)
            pair_force = F.sum(axis=2)
            pair_power = 0.5 * np.sum(F * (v[:, :, None] + v[:, None, :]), axis=2)
        field_force = np.zeros_like(X)
        pot = pot_dt = None
        for d in self.drives:
            field_force = field_force + float(d.profile(t)) * np.asarray(d.force(X))
        if self.include_drive_potential and self.drives:
            pot = sum(float(d.profile(t)) * np.asarray(d.potential(X)) for d in self.drives)
            pot_dt = sum(float(d.profile_dt(t)) * np.asarray(d.potential(X)) for d in self.drives)
            e = e + pot
            field_power = pot_dt
        else:
            field_power = field_force * v
        return {
            "e": e,
            "field_force": field_force,
            "field_power": field_power,
            "pair_force": pair_force,
            "pair_power": pair_power,
            "du0": du0,
            "gamma_total": self.gamma_at(X).sum(axis=1),
        }


def points_for(X: np.ndarray, owner: np.ndarray, exchange: bool) -> np.ndarray:
    """Where each CW is needed: (B, C, 1) at its own electron, or (B, 1, N) at every electron (exchange:
    the same N points for all C CWs of a world, the propagator's shared-weights form)."""
    X = np.asarray(X, dtype=float)
    if exchange:
        return np.ascontiguousarray(X[:, None, :])
    return np.ascontiguousarray(X[:, owner][:, :, None])


def guidance_ratios(
    propagator, psi: np.ndarray, X: np.ndarray, owner: np.ndarray, exchange: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """r1 = d_a Psi/Psi and r2 = d_a^2 Psi/Psi at worlds X through ``propagator.derivatives``.

    Parameters
    ----------
    propagator
        Has ``derivatives(psi, points)`` with points (B, C, P) or (B, 1, P) -> values, d1, d2 (B, C, P).
    psi : ndarray, complex, shape (B, C, n_x)
    X : ndarray, shape (B, N)
        Finite positions [bohr].
    owner : ndarray of int, shape (C,)
    exchange : bool

    Returns
    -------
    r1, r2 : ndarray, complex, shape (B, N)
    values : ndarray, shape (B, C, P)
        The CWs at the points (relative density without exchange).
    z : ndarray, shape (B, N, N), or None
        Exchange only (:func:`exchange_ratios`).
    """
    pts = points_for(X, owner, exchange)
    values, d1, d2 = propagator.derivatives(psi, pts)
    if exchange:
        r1, r2, z = exchange_ratios(values, d1, d2, X.shape[1])
        return r1, r2, values, z
    r1, r2 = plain_ratios(values, d1, d2)
    return r1, r2, values, None
