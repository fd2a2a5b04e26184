"""Initial electron configurations drawn from |Psi0|^2, reproducibly per sample (atomic units).

Three initial states are sampled, each exactly for the *continuous* density that the grid defines:

- ``"slater"``: identical fermions in a Slater determinant of N orbitals,
  |Psi0(x_1..x_N)|^2 proportional to |det[phi_j(x_k)]|^2;
- ``"product"``: distinguishable electrons in a product state, electron k drawn from |phi_k|^2;
- ``"grid"``: any wavefunction tabulated on the full N-dimensional grid (N <= 3).

Notes
-----
**Continuous density.** A grid function f(x_i) on the periodic cell [x_min, x_min + L), L = n_x dx, is
read as its trigonometric interpolant

    f(x) = sum_k c_k exp(i kappa_k (x - x_min)),    c = fft(f) / n_x,   kappa_k = 2 pi fftfreq(n_x, dx)_k,

with the Nyquist term (n_x even) taken symmetrically, c_N cos(kappa_N (x - x_min)), so that real grid
functions have real interpolants. The interpolant of the N-dimensional grid Psi is the product of these
along each axis, and the interpolant of a determinant of orbitals is the determinant of the orbitals'
interpolants (both are multilinear), so the three kinds sample the same continuous law as the exact
Bohmian trajectories, which interpolate Psi the same way. Integrals over the cell use Parseval with
weight 1/2 on the Nyquist coefficient (the exact L2 integral of the interpolant).

**Drawing one coordinate.** A density p(x) made of products of two interpolants, |f|^2, is a
trigonometric polynomial whose frequencies reach 2 kappa_max; its samples on the grid refined 2x
(y_i = x_min + i h, h = dx/2, M = 2 n_x points) determine it exactly. From its real Fourier series the
probability of each fine cell [y_i, y_i + h) is integrated analytically,

    m_i = integral_{y_i}^{y_i + h} p(y) dy = sum_k P_k exp(i kappa_k (y_i - x_min)) (exp(i kappa_k h) - 1) / (i kappa_k),

a cell is chosen with probability m_i / sum m (one uniform), and the position inside it solves
integral_{y_i}^{y_i + t} p = u m_i for t in [0, h] (a second uniform) by safeguarded Newton iteration on
the same analytic series. The draw is therefore exact for the continuous interpolant, up to round-off
(Newton stops at |dt| <= 1e-13 h or at the round-off floor of the series); nothing is linearised
inside a cell.

**Slater determinants** (Hough, Krishnapur, Peres, Virag, Probab. Surveys 3, 206 (2006), Algorithm 18;
the standard projection-DPP sampler). The orbitals are first orthonormalised in L2 (QR of their weighted
Fourier coefficients): the span, hence |det|^2 up to a constant, is unchanged. With the feature vector
v(x) = (phi_1(x), ..., phi_N(x)) in C^N of the orthonormal orbitals, |det[phi_j(x_k)]|^2 / N! is the
projection determinantal point process with kernel K(x, y) = sum_j phi_j(x) phi_j(y)^*, and

    x_1 ~ ||v(x)||^2 / N,    x_m ~ ||P_m v(x)||^2 / (N - m + 1),

where P_m projects out span{v(x_1), ..., v(x_{m-1})} (Gram-Schmidt, done twice for stability, on the
vectors at the *continuous* drawn points). The product of the conditional densities is
det[K(x_a, x_b)] / N! = |det[phi_j(x_k)]|^2 / N!, so the chain is exact, and its ordered output already has
a symmetric law; the N positions are nevertheless returned in the order of a uniformly random permutation
drawn from the sample's own stream, so that no electron label carries the algorithm's order. Each
conditional density ||P_m v||^2 = ||v||^2 - sum_l |e_l^H v|^2 is again a sum of |band-limited|^2 terms, so it
is drawn exactly as above. Cost per sample: O(N^2 n_x) plus the FFTs.

**Grid wavefunctions** (N <= 3): x_1 from the marginal integral |Psi|^2 dx_2..dx_N, then x_2 from the
conditional density of the slice Psi(x_1, x_2, ...) (trigonometric interpolation along axis 1 at the drawn
x_1), and so on. Coordinates keep their labels (no permutation): the grid density need not be symmetric.

**Seeds.** Sample i uses the generator of ``numpy.random.SeedSequence(seed, spawn_key=(i,))``, which is
exactly child i of ``numpy.random.SeedSequence(seed).spawn(n)`` for any n > i (design.md's convention)
without spawning the other children. Each sample consumes a fixed set of draws from its own stream:
``rng.random((N, 2))`` (cell and in-cell uniforms per coordinate) and, for ``"slater"``,
``rng.permutation(N)``. Sample i's positions therefore depend only on (seed, i) and the input; the batched
arithmetic groups samples in chunks, so two runs that group sample i differently agree to round-off
(a cell choice flips only if a uniform falls within ~1e-16 of a cell edge).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bohmpower.errors import ConfigError

__all__ = [
    "KINDS",
    "sample_configurations",
    "sample_grid",
    "sample_product",
    "sample_rng",
    "sample_slater",
]

logger = logging.getLogger(__name__)

KINDS = ("slater", "product", "grid")

# Refinement factor of the grid on which densities (products of two interpolants) are represented
# exactly: 2 is the smallest alias-free choice.
_REFINE = 2
# Largest number of array elements a chunk of samples may hold at once (memory ~ 16 bytes each).
_CHUNK_ELEMENTS = 2**21
# Newton stops when the step is below this fraction of the fine cell width.
_NEWTON_TOL = 1e-13
_NEWTON_MAX_ITER = 200
# Below this many rows the Fourier series are summed with one exponential per term; above it, by
# Horner's rule in z = exp(i kappa_1 x) (a Python loop over wavenumbers, cheap per row).
_HORNER_MIN_ROWS = 256
# Relative size of the smallest QR diagonal below which orbitals count as linearly dependent.
_RANK_TOL = 1e-10
# The largest grid dimension sample_grid accepts.
_GRID_MAX_PARTICLES = 3


# --------------------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------------------


def sample_rng(seed: int, sample_id: int) -> np.random.Generator:
    """Random generator of one sample, independent of how many samples or ranks there are.

    Parameters
    ----------
    seed : int
        Run seed (``[trajectories] seed``), >= 0.
    sample_id : int
        Global sample index, >= 0.

    Returns
    -------
    numpy.random.Generator
        PCG64 generator seeded by ``SeedSequence(seed, spawn_key=(sample_id,))``.

    Notes
    -----
    ``SeedSequence(seed).spawn(n)[i]`` is ``SeedSequence(seed, spawn_key=(i,))`` for every n > i, so this
    is child ``sample_id`` of the run's root sequence, built directly (no need to spawn children
    0..sample_id - 1). Streams of different ids are statistically independent (SeedSequence hashing).
    """
    seed = _check_nonnegative_int(seed, "trajectories.seed")
    if isinstance(sample_id, bool) or not isinstance(sample_id, (int, np.integer)) or sample_id < 0:
        raise ValueError(f"sample_id must be a non-negative integer (got {sample_id!r})")
    sample_id = int(sample_id)
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(sample_id,)))
    )


def _check_nonnegative_int(value, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(key, f"must be a non-negative integer (got {value!r})")
    return int(value)


# --------------------------------------------------------------------------------------------------
# Trigonometric interpolation helpers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cell:
    """The periodic cell of a grid: x_min, spacing, number of points."""

    x0: float
    dx: float
    n_x: int

    @property
    def length(self) -> float:
        return self.n_x * self.dx

    @property
    def n_fine(self) -> int:
        return _REFINE * self.n_x

    @property
    def h(self) -> float:
        return self.dx / _REFINE


def _check_grid(x) -> _Cell:
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"x must be a 1D array of at least 2 grid points (got shape {x.shape})")
    dx = (x[-1] - x[0]) / (x.size - 1)
    if not np.all(np.isfinite(x)) or dx <= 0 or not np.allclose(np.diff(x), dx, rtol=1e-9, atol=0):
        raise ValueError("x must be increasing and uniformly spaced (a bohmpower Grid's x)")
    return _Cell(float(x[0]), float(dx), int(x.size))


def _nyquist_weights(n: int) -> np.ndarray:
    """L2 weights of the Fourier coefficients: 1, and 1/2 on the symmetric Nyquist term."""
    w = np.ones(n)
    if n % 2 == 0:
        w[n // 2] = 0.5
    return w


def _pad_coefficients(c: np.ndarray, axis: int, n_fine: int) -> np.ndarray:
    """Fourier coefficients (fft order, fft(f)/n) of a grid function on a grid refined to n_fine points.

    The Nyquist coefficient is split evenly between +kappa_N and -kappa_N (symmetric interpolant).
    """
    c = np.moveaxis(np.asarray(c), axis, -1)
    n = c.shape[-1]
    out = np.zeros(c.shape[:-1] + (n_fine,), dtype=complex)
    n_pos = (n + 1) // 2
    n_neg = n // 2 - 1 if n % 2 == 0 else n // 2
    out[..., :n_pos] = c[..., :n_pos]
    if n_neg:
        out[..., n_fine - n_neg :] = c[..., n - n_neg :]
    if n % 2 == 0:
        out[..., n // 2] = 0.5 * c[..., n // 2]
        out[..., n_fine - n // 2] = 0.5 * c[..., n // 2]
    return np.moveaxis(out, -1, axis)


def _fine_values(c: np.ndarray, axis: int, cell: _Cell) -> np.ndarray:
    """Values of the interpolant with coefficients ``c`` (along ``axis``) at the fine points y_i."""
    m = cell.n_fine
    return m * np.fft.ifft(_pad_coefficients(c, axis, m), axis=axis)


def _interp_vector(xq: np.ndarray, cell: _Cell) -> np.ndarray:
    """Row vectors e(x) with f(x) = e(x) @ c for coefficients c = fft(f)/n_x; shape (len(xq), n_x)."""
    kappa = 2.0 * np.pi * np.fft.fftfreq(cell.n_x, d=cell.dx)
    s = np.asarray(xq, dtype=float)[:, None] - cell.x0
    e = np.exp(1j * kappa[None, :] * s)
    if cell.n_x % 2 == 0:
        k_nyq = cell.n_x // 2
        e[:, k_nyq] = np.cos(np.abs(kappa[k_nyq]) * s[:, 0])
    return e


# --------------------------------------------------------------------------------------------------
# Exact draw of one coordinate from a band-limited density
# --------------------------------------------------------------------------------------------------


def _draw_coordinate(p: np.ndarray, cell: _Cell, u: np.ndarray) -> np.ndarray:
    """Draw one position per sample from densities given by their values on the fine grid.

    Parameters
    ----------
    p : ndarray, shape (n_rows, M)
        Unnormalised densities at y_i = x0 + i h, M = 2 n_x; n_rows is 1 (shared by every sample) or S.
        Each row must be a trigonometric polynomial resolved by the fine grid (|f|^2 of interpolants).
    cell : _Cell
    u : ndarray, shape (S, 2)
        Uniforms in [0, 1): column 0 picks the fine cell, column 1 the position inside it.

    Returns
    -------
    ndarray, shape (S,)
        Positions in [x0, x0 + L) [bohr].
    """
    n_samples = u.shape[0]
    m = p.shape[-1]
    h = cell.h
    n_k = m // 2 + 1
    coef = np.fft.rfft(p, axis=-1) / m  # p(y) = Re sum_k mult_k coef_k exp(i kappa_k (y - x0))
    kappa = 2.0 * np.pi * np.arange(n_k) / (m * h)
    # Cell integrals; the Nyquist cosine integrates to zero over every fine cell.
    weight = np.empty(n_k, dtype=complex)
    weight[0] = h
    weight[1:] = (np.exp(1j * kappa[1:] * h) - 1.0) / (1j * kappa[1:])
    weight[-1] = 0.0
    masses = np.fft.irfft(coef * m * weight, n=m, axis=-1)
    # Round-off can leave |masses| ~ 1e-16 max p negative in empty regions: they are zero.
    np.maximum(masses, 0.0, out=masses)
    cdf = np.cumsum(masses, axis=-1)
    total = cdf[:, -1]
    if np.any(~(total > 0)) or not np.all(np.isfinite(total)):
        raise ValueError("a density to sample from vanishes or is not finite")
    rows = np.zeros(n_samples, dtype=int) if p.shape[0] == 1 else np.arange(n_samples)
    target = u[:, 0] * total[rows]
    idx = np.empty(n_samples, dtype=int)
    if p.shape[0] == 1:
        idx[:] = np.searchsorted(cdf[0], target, side="right")
    else:
        idx[:] = np.sum(cdf <= target[:, None], axis=-1)
    np.minimum(idx, m - 1, out=idx)

    # p(y) = Re sum_{k=1}^{M/2-1} b_k z^k + p0 + pn cos(kappa_N (y - x0)),  z = exp(i kappa_1 (y - x0)),
    # and its primitive Re sum b_k z^k / (i kappa_k) + p0 (y - x0) + pn sin(kappa_N (y - x0)) / kappa_N:
    # polynomials in z on the unit circle, evaluated by Horner's rule (stable there, and much cheaper
    # than one complex exponential per wavenumber).
    kin = kappa[1:-1]
    b = 2.0 * coef[:, 1:-1]
    b_int = b / (1j * kin[None, :])
    shared = p.shape[0] == 1
    if n_samples >= _HORNER_MIN_ROWS:  # row-contiguous coefficients for Horner's loop over k
        b_t = b.T.copy()
        b_int_t = b_int.T.copy()
    p0 = coef[rows, 0].real
    k_nyq = kappa[-1]
    sign = np.where(idx % 2 == 0, 1.0, -1.0)  # cos/sin(kappa_N (y_i - x0)) = (+-1, 0)
    pn = coef[rows, -1].real * sign

    def horner(z, sel):
        """Re sum_k b_k z^k and Re sum_k b_int_k z^k, k = 1 .. M/2 - 1, for the rows ``sel``."""
        if z.size < _HORNER_MIN_ROWS:
            # Few rows: one vectorised pass over all wavenumbers beats a Python loop over them.
            zk = np.exp(1j * np.outer(np.angle(z), np.arange(1, kin.size + 1)))
            rows_sel = np.zeros(z.size, dtype=int) if shared else sel
            return (
                np.sum((b[rows_sel] * zk).real, axis=-1),
                np.sum((b_int[rows_sel] * zk).real, axis=-1),
            )
        acc = np.zeros(z.shape, dtype=complex)
        acc_int = np.zeros(z.shape, dtype=complex)
        for k in range(kin.size - 1, -1, -1):
            if shared:
                acc = acc * z + b_t[k, 0]
                acc_int = acc_int * z + b_int_t[k, 0]
            else:
                acc = acc * z + b_t[k, sel]
                acc_int = acc_int * z + b_int_t[k, sel]
        return (acc * z).real, (acc_int * z).real

    left = cell.x0 + idx * h
    edge_int = horner(np.exp(1j * kin[0] * (left - cell.x0)), np.arange(n_samples))[1]

    def series(t, sel):
        """Integral from the cell's left edge to t, and density at t, for the rows ``sel``."""
        osc, osc_int = horner(np.exp(1j * kin[0] * (left[sel] + t - cell.x0)), sel)
        dens = osc + p0[sel] + pn[sel] * np.cos(k_nyq * t)
        integ = osc_int - edge_int[sel] + p0[sel] * t + pn[sel] * np.sin(k_nyq * t) / k_nyq
        return integ, dens

    everyone = np.arange(n_samples)
    goal = u[:, 1] * series(np.full(n_samples, h), everyone)[0]
    # Round-off floor of the integral series: stop there, where Newton steps are noise.
    floor = (
        64.0
        * np.finfo(float).eps
        * (np.sum(np.abs(b_int), axis=-1)[rows] + np.abs(p0) * h + np.abs(pn) / k_nyq)
    )
    # Start from the inverse of the primitive of the linear interpolant between the cell's edge values.
    p_left = p[rows, idx]
    p_right = p[rows, (idx + 1) % m]
    slope = p_right - p_left
    area = u[:, 1] * 0.5 * (p_left + p_right)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.sqrt(np.maximum(p_left**2 + 2.0 * slope * area, 0.0))
        t = np.where(np.abs(slope) > 1e-12 * np.abs(p_left), 2.0 * area / (p_left + root), u[:, 1])
    t = np.where(np.isfinite(t), t, u[:, 1]) * h
    t = np.clip(t, 0.0, h)
    lo = np.zeros(n_samples)
    hi = np.full(n_samples, h)
    active = everyone
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(_NEWTON_MAX_ITER):
            if active.size == 0:
                break
            ta = t[active]
            f, dens = series(ta, active)
            f -= goal[active]
            below = f <= 0.0
            lo[active] = np.where(below, ta, lo[active])
            hi[active] = np.where(below, hi[active], ta)
            t_new = ta - f / dens
            bad = ~((t_new > lo[active]) & (t_new < hi[active]))
            t_new = np.where(bad, 0.5 * (lo[active] + hi[active]), t_new)
            at_floor = np.abs(f) <= floor[active]
            done = (
                (np.abs(t_new - ta) <= _NEWTON_TOL * h)
                | (hi[active] - lo[active] <= _NEWTON_TOL * h)
                | at_floor
            )
            # At the floor f is noise: keep the current iterate rather than a noisy step.
            t[active] = np.where(at_floor, ta, t_new)
            active = active[~done]
    if active.size:
        logger.debug(
            "in-cell Newton left %d of %d draws at the bracket midpoint", active.size, n_samples
        )
    x = cell.x0 + idx * h + np.clip(t, 0.0, h)
    return np.where(x >= cell.x0 + cell.length, x - cell.length, x)


# --------------------------------------------------------------------------------------------------
# Slater determinants
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SlaterPlan:
    cell: _Cell
    coef: np.ndarray  # (N, n_x) Fourier coefficients of L2-orthonormal orbitals
    fine: np.ndarray  # (M, N) their values on the fine grid
    base: np.ndarray  # (1, M) ||v(y)||^2 on the fine grid: L n(y), n the one-particle density


def _orbital_array(orbitals, cell: _Cell, name: str) -> np.ndarray:
    phi = np.asarray(orbitals, dtype=complex)
    if phi.ndim != 2 or phi.shape[1] != cell.n_x or phi.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, n_x) with n_x = {cell.n_x} (got {phi.shape})")
    if not np.all(np.isfinite(phi)):
        raise ConfigError("initial", "the initial orbitals contain NaN or infinite values")
    return phi


def _slater_plan(orbitals, x) -> _SlaterPlan:
    cell = _check_grid(x)
    phi = _orbital_array(orbitals, cell, "orbitals")
    n = phi.shape[0]
    if n > cell.n_x:
        raise ConfigError("particles.count", f"{n} fermions do not fit in {cell.n_x} grid points")
    sqrt_w = np.sqrt(_nyquist_weights(cell.n_x))
    coef = np.fft.fft(phi, axis=1) / cell.n_x
    # QR of the weighted coefficients: orthonormal in the exact L2 product of the interpolants.
    q, r = np.linalg.qr((coef * sqrt_w).T)
    diag = np.abs(np.diag(r))
    if diag.min() <= _RANK_TOL * diag.max():
        raise ConfigError(
            "initial",
            "the orbitals are linearly dependent, so the Slater determinant vanishes: "
            "give N distinct orbitals (packets with different centres, widths or wavenumbers)",
        )
    coef_on = q.T / sqrt_w
    fine = _fine_values(coef_on, 1, cell).T.copy()
    base = np.sum(np.abs(fine) ** 2, axis=1)[None, :]
    return _SlaterPlan(cell, coef_on, fine, base)


def _slater_batch(plan: _SlaterPlan, u: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Projection-DPP chain for S samples at once; u (S, N, 2), perm (S, N) -> positions (S, N)."""
    n_samples, n = perm.shape
    chain = np.empty((n_samples, n))
    basis = np.zeros((n_samples, n, n), dtype=complex)
    removed = np.zeros((n_samples, plan.base.shape[1]))
    for m in range(n):
        dens = plan.base if m == 0 else plan.base - removed
        xm = _draw_coordinate(dens, plan.cell, u[:, m, :])
        chain[:, m] = xm
        v = _interp_vector(xm, plan.cell) @ plan.coef.T
        for _ in range(2):  # classical Gram-Schmidt twice: orthogonal to round-off
            if m:
                proj = np.einsum("slj,sj->sl", basis[:, :m].conj(), v)
                v = v - np.einsum("sl,slj->sj", proj, basis[:, :m])
        norm = np.linalg.norm(v, axis=1)
        if np.any(~(norm > 0)):
            raise ValueError("a drawn point has zero conditional density (Slater chain degenerate)")
        e = v / norm[:, None]
        basis[:, m] = e
        if m < n - 1:
            removed += np.abs(e.conj() @ plan.fine.T) ** 2
    return np.take_along_axis(chain, perm, axis=1)


def sample_slater(orbitals: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw N fermion positions from |det[phi_j(x_k)]|^2 (exact, continuous).

    Parameters
    ----------
    orbitals : ndarray, shape (N, n_x), complex
        Orbital j on the grid (any normalisation; linearly independent).
    x : ndarray, shape (n_x,)
        Uniform grid points [bohr]; the periodic cell is [x[0], x[0] + n_x dx).
    rng : numpy.random.Generator
        The sample's generator (``sample_rng(seed, i)``); consumes ``random((N, 2))`` then
        ``permutation(N)``.

    Returns
    -------
    ndarray, shape (N,)
        Positions [bohr] in a uniformly random electron order.

    Notes
    -----
    Projection determinantal point process chain on the L2-orthonormalised orbitals (module Notes):
    x_m ~ ||P_m v(x)||^2 / (N - m + 1); exact for the trigonometric interpolants of the orbitals.
    """
    plan = _slater_plan(orbitals, x)
    n = plan.coef.shape[0]
    u = rng.random((n, 2))
    perm = rng.permutation(n)
    return _slater_batch(plan, u[None], perm[None])[0]


# --------------------------------------------------------------------------------------------------
# Products of orbitals (distinguishable electrons)
# --------------------------------------------------------------------------------------------------


def _product_plan(orbitals, x) -> tuple[_Cell, np.ndarray]:
    cell = _check_grid(x)
    phi = _orbital_array(orbitals, cell, "orbitals")
    fine = _fine_values(np.fft.fft(phi, axis=1) / cell.n_x, 1, cell)
    dens = np.abs(fine) ** 2
    if np.any(~(dens.max(axis=1) > 0)):
        raise ConfigError("initial", "an orbital vanishes everywhere on the grid")
    return cell, dens


def _product_batch(cell: _Cell, dens: np.ndarray, u: np.ndarray) -> np.ndarray:
    out = np.empty(u.shape[:2])
    for k in range(dens.shape[0]):
        out[:, k] = _draw_coordinate(dens[k : k + 1], cell, u[:, k, :])
    return out


def sample_product(orbitals: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw distinguishable electrons independently, electron k from |phi_k(x)|^2 (exact, continuous).

    Parameters
    ----------
    orbitals : ndarray, shape (N, n_x), complex
        Orbital of electron k on the grid (any normalisation).
    x : ndarray, shape (n_x,)
        Uniform grid points [bohr].
    rng : numpy.random.Generator
        The sample's generator; consumes ``random((N, 2))``.

    Returns
    -------
    ndarray, shape (N,)
        Position of electron k in column k [bohr] (labels kept).
    """
    cell, dens = _product_plan(orbitals, x)
    return _product_batch(cell, dens, rng.random((dens.shape[0], 2))[None])[0]


# --------------------------------------------------------------------------------------------------
# Full N-dimensional grid wavefunction
# --------------------------------------------------------------------------------------------------


def _grid_plan(psi, x) -> tuple[_Cell, np.ndarray, np.ndarray]:
    cell = _check_grid(x)
    psi = np.asarray(psi, dtype=complex)
    if psi.ndim < 1 or any(s != cell.n_x for s in psi.shape):
        raise ValueError(f"psi must have shape (n_x,)*N with n_x = {cell.n_x} (got {psi.shape})")
    if psi.ndim > _GRID_MAX_PARTICLES:
        raise ConfigError(
            "particles.count",
            f"sampling the full grid is limited to N <= {_GRID_MAX_PARTICLES} (got {psi.ndim}); "
            "use the Slater or product sampler",
        )
    if not np.all(np.isfinite(psi)) or not np.any(psi != 0):
        raise ConfigError("initial", "the initial wavefunction is zero or not finite")
    n = psi.ndim
    coef = np.fft.fftn(psi) / cell.n_x**n
    c_rev = np.ascontiguousarray(coef.transpose(tuple(range(n - 1, -1, -1))))
    return cell, c_rev, _grid_marginal(c_rev[None], cell)


def _grid_marginal(c: np.ndarray, cell: _Cell) -> np.ndarray:
    """Density of the last axis of ``c`` (rows, n_x, ..., n_x) on the fine grid, integrated over the rest.

    The integral over the other coordinates is the exact L2 integral of the interpolant (Parseval on
    their Fourier coefficients, Nyquist weight 1/2); returns shape (rows, M).
    """
    dens = np.abs(_fine_values(c, -1, cell)) ** 2  # (rows, n_x, ..., M)
    w = _nyquist_weights(cell.n_x)
    while dens.ndim > 2:
        dens = np.matmul(w, dens)  # contracts the first of the remaining coordinate axes
    return dens


def _grid_batch(cell: _Cell, c_rev: np.ndarray, dens0: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Marginal then conditionals for S samples; u (S, N, 2) -> positions (S, N).

    ``c_rev`` holds the Fourier coefficients with the axes reversed, so that the coordinate drawn next is
    always the last (contiguous) axis; ``dens0`` (1, M) is the first coordinate's marginal.
    """
    n_samples, n = u.shape[:2]
    out = np.empty((n_samples, n))
    c = c_rev[None]
    for m in range(n):
        dens = dens0 if m == 0 else _grid_marginal(c, cell)
        xm = _draw_coordinate(dens, cell, u[:, m, :])
        out[:, m] = xm
        if m < n - 1:
            e = _interp_vector(xm, cell)  # (S, n_x)
            rest = c.shape[1:-1]
            if c.shape[0] == 1:
                c = (c[0].reshape(-1, cell.n_x) @ e.T).T.reshape((n_samples,) + rest)
            else:
                flat = c.reshape(n_samples, -1, cell.n_x)
                c = (flat @ e[:, :, None]).reshape((n_samples,) + rest)
    return out


def sample_grid(psi: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw N positions from |Psi(x_1..x_N)|^2 of a wavefunction on the full grid (N <= 3).

    Parameters
    ----------
    psi : ndarray, shape (n_x,)*N, complex
        Wavefunction on the N-dimensional grid (any normalisation); axis k is electron k.
    x : ndarray, shape (n_x,)
        Uniform grid points [bohr].
    rng : numpy.random.Generator
        The sample's generator; consumes ``random((N, 2))``.

    Returns
    -------
    ndarray, shape (N,)
        Position of the electron of axis k in column k [bohr] (labels kept).

    Notes
    -----
    x_1 ~ integral |Psi|^2 dx_2..dx_N, then x_m ~ |Psi(x_1..x_{m-1}, x_m, ...)|^2 integrated over the rest;
    exact for the trigonometric interpolant of Psi (module Notes).
    """
    cell, c_rev, dens0 = _grid_plan(psi, x)
    return _grid_batch(cell, c_rev, dens0, rng.random((c_rev.ndim, 2))[None])[0]


# --------------------------------------------------------------------------------------------------
# Batched draws for lists of sample ids
# --------------------------------------------------------------------------------------------------


def sample_configurations(
    kind: str,
    data: np.ndarray,
    x: np.ndarray,
    seed: int,
    sample_ids: Sequence[int] | np.ndarray,
) -> np.ndarray:
    """Initial configurations of the given samples, each from its own random stream.

    Parameters
    ----------
    kind : {"slater", "product", "grid"}
        Identical fermions in a Slater determinant, distinguishable electrons in a product of orbitals,
        or a wavefunction on the full grid.
    data : ndarray
        Orbitals, shape (N, n_x), for "slater" and "product"; Psi, shape (n_x,)*N (N <= 3), for "grid".
    x : ndarray, shape (n_x,)
        Uniform grid points [bohr].
    seed : int
        Run seed, >= 0.
    sample_ids : sequence of int
        Global sample indices (>= 0, any order, repeats allowed).

    Returns
    -------
    ndarray, shape (len(sample_ids), N)
        Row r holds the positions of sample ``sample_ids[r]`` [bohr]; equal (to round-off) to
        ``sample_<kind>(data, x, sample_rng(seed, sample_ids[r]))`` whatever the other ids.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} (got {kind!r})")
    seed = _check_nonnegative_int(seed, "trajectories.seed")
    ids = np.asarray(sample_ids)
    if ids.ndim != 1 or (ids.size and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0)):
        raise ValueError("sample_ids must be a 1D sequence of non-negative integers")

    if kind == "slater":
        plan = _slater_plan(data, x)
        cell, n = plan.cell, plan.coef.shape[0]
        per_sample = 8 * cell.n_fine  # ~8 fine-grid arrays per sample, whatever N

        def batch(u, perm):
            return _slater_batch(plan, u, perm)
    elif kind == "product":
        cell, dens = _product_plan(data, x)
        n = dens.shape[0]
        per_sample = 4 * cell.n_fine

        def batch(u, perm):
            return _product_batch(cell, dens, u)
    else:
        cell, c_rev, dens0 = _grid_plan(data, x)
        n = c_rev.ndim
        per_sample = cell.n_fine * cell.n_x ** max(n - 2, 0) + cell.n_x ** (n - 1)

        def batch(u, perm):
            return _grid_batch(cell, c_rev, dens0, u)

    out = np.empty((ids.size, n))
    chunk = max(1, _CHUNK_ELEMENTS // per_sample)
    for start in range(0, ids.size, chunk):
        stop = min(start + chunk, ids.size)
        u = np.empty((stop - start, n, 2))
        perm = np.empty((stop - start, n), dtype=int)
        for row, sid in enumerate(ids[start:stop]):
            rng = sample_rng(seed, int(sid))
            u[row] = rng.random((n, 2))
            if kind == "slater":
                perm[row] = rng.permutation(n)
        out[start:stop] = batch(u, perm)
    logger.debug("drew %d %s configurations of %d electrons", ids.size, kind, n)
    return out
