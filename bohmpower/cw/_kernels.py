"""numba kernels of the conditional-wavefunction propagator and their plain-numpy twins.

Private module: arrays and scalars only, no validation (``propagator.ConditionalPropagator``
validates). Every ``*_nb`` kernel has a ``*_np`` twin with the same arguments;
tests/test_cw_propagator.py holds one against the other to round-off.

Shapes: ``psi`` (B, C, M) complex128 (world, conditional wavefunction, grid point); ``owner`` (C,)
int64; ``x_mid`` (B, N) float64 (a row with a NaN is a removed world, left untouched); ``x`` (M,).

The interaction W(r) enters through an integer ``kind`` and two parameters, so the kernels never call
Python:

==========  ==========================  =====================================================
kind        W(r)                        parameters
==========  ==========================  =====================================================
W_NONE      0                           -
W_SOFT      p1 / sqrt(r^2 + p2)         p1 = 1/eps_r, p2 = a^2 (soft Coulomb)
W_HARMONIC  p1 r^2                      p1 = strength / 2
W_TABLE     wpre[b, j, i]               W(x_i - X_bj) evaluated by the caller, (B, N, M)
==========  ==========================  =====================================================
"""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import numpy as np
from numba import njit, prange

try:  # rocket-fft registers numba overloads and the low-level c2c (DUCC0) on import
    from rocket_fft import c2c as _c2c

    HAVE_ROCKET_FFT = True
except ImportError:  # pragma: no cover - the package declares rocket-fft; scipy path still works
    _c2c = None
    HAVE_ROCKET_FFT = False

__all__ = [
    "HAVE_ROCKET_FFT",
    "W_HARMONIC",
    "W_NONE",
    "W_SOFT",
    "W_TABLE",
    "cis_nb",
    "cis_np",
    "mul_owner_phase_nb",
    "mul_owner_phase_np",
    "owner_phases_nb",
    "owner_phases_np",
    "pool_phases_nb",
    "pool_phases_np",
    "stencil_eval_nb",
    "stencil_eval_np",
    "step_worlds_nb",
    "step_worlds_np",
    "step_rows_nb",
    "trig_eval_np",
]

W_NONE, W_SOFT, W_HARMONIC, W_TABLE = 0, 1, 2, 3


def _pio2_parts() -> tuple[float, float, float, float]:
    # Cody-Waite split of pi/2 into three doubles whose first two have <= 33 significant bits, so that
    # n * part is exact for |n| < 2^20 (|theta| < 1.6e6 rad) and the reduction loses no accuracy.
    getcontext().prec = 60
    pi = Decimal("3.14159265358979323846264338327950288419716939937510582097494")
    half = pi / 2
    h1 = math.ldexp(round(math.ldexp(float(half), 32)), -32)
    rest = half - Decimal(h1)
    h2 = math.ldexp(round(math.ldexp(float(rest), 65)), -65)
    h3 = float(rest - Decimal(h2))
    return h1, h2, h3, float(2 / pi)


_PIO2_1, _PIO2_2, _PIO2_3, _TWO_OVER_PI = _pio2_parts()
# Taylor coefficients 1/n! (exact rationals rounded once). On |r| <= pi/4 the first omitted terms are
# r^19/19! < 1e-19 and r^20/20! < 4e-21, below round-off, so no fitted (minimax) constants are needed.
_S = tuple((-1.0) ** k / math.factorial(2 * k + 1) for k in range(9))
_CC = tuple((-1.0) ** k / math.factorial(2 * k) for k in range(10))


@njit(cache=True, inline="always", error_model="numpy")
def _cis(t):
    """(cos t, sin t) with branch-free arithmetic, so that LLVM vectorises loops that call it.

    numba without Intel SVML calls the scalar libm sin and cos (measured 9.5 us per 1024 points,
    twice an FFT pair); this version costs about 1.9 us with a maximum error of 1.6e-16.
    """
    n = np.rint(t * _TWO_OVER_PI)
    r = ((t - n * _PIO2_1) - n * _PIO2_2) - n * _PIO2_3
    z = r * r
    s = r * (
        _S[0]
        + z
        * (
            _S[1]
            + z
            * (
                _S[2]
                + z * (_S[3] + z * (_S[4] + z * (_S[5] + z * (_S[6] + z * (_S[7] + z * _S[8])))))
            )
        )
    )
    c = _CC[0] + z * (
        _CC[1]
        + z
        * (
            _CC[2]
            + z
            * (
                _CC[3]
                + z
                * (_CC[4] + z * (_CC[5] + z * (_CC[6] + z * (_CC[7] + z * (_CC[8] + z * _CC[9])))))
            )
        )
    )
    q = np.int64(n) & 3  # quadrant: t = r + q pi/2 (mod 2 pi)
    cc = s if (q & 1) else c
    ss = c if (q & 1) else s
    if ((q + 1) >> 1) & 1:
        cc = -cc
    if (q >> 1) & 1:
        ss = -ss
    return cc, ss


@njit(cache=True, error_model="numpy")
def cis_nb(theta, out):
    """out[i] = exp(i theta[i])  (theta real (M,), out complex (M,))."""
    for i in range(theta.shape[0]):
        c, s = _cis(theta[i])
        out[i] = complex(c, s)


def cis_np(theta, out):
    out[:] = np.exp(1j * theta)


@njit(cache=True, inline="always", error_model="numpy")
def _w(r, kind, p1, p2):
    if kind == W_SOFT:
        return p1 / np.sqrt(r * r + p2)
    return p1 * r * r  # W_HARMONIC


@njit(cache=True, error_model="numpy")
def _interaction_rows(b, x, x_mid, kind, p1, p2, wpre, wrows, wsum):
    """wrows[j, :] = W(x - X_bj), wsum = sum_j wrows[j]: O(N M), the sum over electrons done once."""
    n, m = x_mid.shape[1], x.shape[0]
    for i in range(m):
        wsum[i] = 0.0
    for j in range(n):
        xj = x_mid[b, j]
        if kind == W_TABLE:
            for i in range(m):
                w = wpre[b, j, i]
                wrows[j, i] = w
                wsum[i] += w
        else:
            for i in range(m):
                w = _w(x[i] - xj, kind, p1, p2)
                wrows[j, i] = w
                wsum[i] += w


@njit(cache=True, error_model="numpy")
def _owner_phase(base_phase, wsum, wrow, half_dt, out):
    # base_phase already holds exp(-i h (U0 + q phi) - h Gamma); the owner's interaction is
    # Wsum - W(x - X_owner): everyone's pair potential minus its own (no self-interaction).
    for i in range(out.shape[0]):
        c, s = _cis(-half_dt * (wsum[i] - wrow[i]))
        out[i] = base_phase[i] * complex(c, s)


@njit(cache=True, error_model="numpy")
def _removed(x_mid, b):
    for j in range(x_mid.shape[1]):
        if np.isnan(x_mid[b, j]):
            return True
    return False


@njit(cache=True, error_model="numpy")
def owner_phases_nb(x_mid, x, base_phase, kind, p1, p2, wpre, half_dt, phases):
    """phases[b, a] = exp(-i h [U0 + q phi + sum_{j != a} W(x - X_bj)] - h Gamma)  (B, N, M).

    Used by the batched-FFT (scipy) path. Removed worlds are skipped (their rows are not written).
    """
    n_b, n = x_mid.shape
    m = x.shape[0]
    wrows = np.empty((n, m))
    wsum = np.empty(m)
    for b in range(n_b):
        if _removed(x_mid, b):
            continue
        if kind == W_NONE:
            for a in range(n):
                phases[b, a, :] = base_phase
            continue
        _interaction_rows(b, x, x_mid, kind, p1, p2, wpre, wrows, wsum)
        for a in range(n):
            _owner_phase(base_phase, wsum, wrows[a], half_dt, phases[b, a])


def _w_np(r, kind, p1, p2):
    if kind == W_SOFT:
        return p1 / np.sqrt(r * r + p2)
    if kind == W_HARMONIC:
        return p1 * r * r
    return np.zeros_like(r)


def owner_phases_np(x_mid, x, base_phase, kind, p1, p2, wpre, half_dt, phases):
    alive = ~np.isnan(x_mid).any(axis=1)
    xm = x_mid[alive]
    if kind == W_TABLE:
        wr = wpre[alive]
    else:
        wr = _w_np(x[None, None, :] - xm[:, :, None], kind, p1, p2)
    # The potential of owner a built explicitly as the sum over j != a (no subtraction trick), so the
    # twin checks the O(N M) kernel against the definition.
    n = x_mid.shape[1]
    v = np.empty_like(wr)
    for a in range(n):
        others = [j for j in range(n) if j != a]
        v[:, a] = wr[:, others].sum(axis=1)
    phases[alive] = base_phase * np.exp(-1j * half_dt * v)


@njit(cache=True, error_model="numpy")
def pool_phases_nb(group, x_mid, x, base_phase, kind, p1, p2, half_dt, n_groups, phases):
    """phases[p] = exp(-i h [U0 + q phi + sum_{q != p, group[q] = group[p]} W(x - X_q)] - h Gamma).

    The pool layout of an open system (devices.engine): row p is one electron, ``group[p]`` its
    world, ``x_mid`` (P,) the positions. Each world's sum of pair potentials is accumulated once,
    O(P M), and each electron's own row subtracted (no self-interaction), as in ``owner_phases_nb``.
    """
    n_p, m = x_mid.shape[0], x.shape[0]
    wsum = np.zeros((n_groups, m))
    for p in range(n_p):
        g, xp = group[p], x_mid[p]
        for i in range(m):
            wsum[g, i] += _w(x[i] - xp, kind, p1, p2)
    for p in range(n_p):
        g, xp = group[p], x_mid[p]
        for i in range(m):
            c, s = _cis(-half_dt * (wsum[g, i] - _w(x[i] - xp, kind, p1, p2)))
            phases[p, i] = base_phase[i] * complex(c, s)


def pool_phases_np(group, x_mid, x, base_phase, kind, p1, p2, half_dt, n_groups, phases):
    # the sum over the other electrons of the same world written out (no subtraction trick)
    wr = _w_np(x[None, :] - x_mid[:, None], kind, p1, p2)
    for p in range(x_mid.shape[0]):
        others = (group == group[p]) & (np.arange(x_mid.shape[0]) != p)
        phases[p] = base_phase * np.exp(-1j * half_dt * wr[others].sum(axis=0))


@njit(cache=True, error_model="numpy")
def mul_owner_phase_nb(psi, owner, phases):
    """psi[b, c] *= phases[b, owner[c]]  (in place; the scipy path's potential half step)."""
    n_b, n_c, m = psi.shape
    for b in range(n_b):
        for c in range(n_c):
            a = owner[c]
            for i in range(m):
                psi[b, c, i] *= phases[b, a, i]


def mul_owner_phase_np(psi, owner, phases):
    psi *= phases[:, owner]


if HAVE_ROCKET_FFT:

    @njit(cache=True, inline="always", error_model="numpy")
    def _split_row(row, ph, kin, axes):
        # potential half step, FFT, kinetic phase, inverse FFT, potential half step, in place
        m = row.shape[0]
        for i in range(m):
            row[i] *= ph[i]
        _c2c(row, row, axes, True, 1.0, 1)
        for i in range(m):
            row[i] *= kin[i]
        _c2c(row, row, axes, False, 1.0, 1)
        for i in range(m):
            row[i] *= ph[i]

    @njit(cache=True, error_model="numpy")
    def _step_range(
        psi,
        owner,
        x_mid,
        x,
        base_phase,
        kin,
        kind,
        p1,
        p2,
        wpre,
        half_dt,
        b0,
        b1,
        wrows,
        wsum,
        phase,
    ):
        # One conditional wavefunction at a time, entirely in cache (16 kB at M = 1024): potential
        # half step, FFT, kinetic phase, inverse FFT, potential half step. The 1/M of the inverse
        # transform is folded into ``kin``.
        axes = np.zeros(1, dtype=np.int64)
        n_c = psi.shape[1]
        for b in range(b0, b1):
            if _removed(x_mid, b):
                continue
            if kind != W_NONE:
                _interaction_rows(b, x, x_mid, kind, p1, p2, wpre, wrows, wsum)
            last = -1
            for c in range(n_c):
                a = owner[c]
                if kind == W_NONE:
                    ph = base_phase
                else:
                    if a != last:  # owners sharing a potential come in runs: build it once per run
                        _owner_phase(base_phase, wsum, wrows[a], half_dt, phase)
                        last = a
                    ph = phase
                _split_row(psi[b, c], ph, kin, axes)

    @njit(cache=True, error_model="numpy")
    def step_worlds_nb(psi, owner, x_mid, x, base_phase, kin, kind, p1, p2, wpre, half_dt):
        """One Strang step of every conditional wavefunction, in place (one thread).

        psi[b, c] <- P_bc F^-1 K F P_bc psi[b, c], P_bc = exp(-i h V_{owner[c]}) (h = dt/2), K = kin.
        """
        n_b, n, m = psi.shape[0], x_mid.shape[1], psi.shape[2]
        wrows = np.empty((n, m))
        wsum = np.empty(m)
        phase = np.empty(m, dtype=np.complex128)
        _step_range(
            psi,
            owner,
            x_mid,
            x,
            base_phase,
            kin,
            kind,
            p1,
            p2,
            wpre,
            half_dt,
            0,
            n_b,
            wrows,
            wsum,
            phase,
        )

    @njit(cache=True, parallel=True, error_model="numpy")
    def step_worlds_par_nb(
        psi, owner, x_mid, x, base_phase, kin, kind, p1, p2, wpre, half_dt, n_chunks
    ):
        """``step_worlds_nb`` with the worlds split into ``n_chunks`` chunks run by numba threads."""
        n_b, n, m = psi.shape[0], x_mid.shape[1], psi.shape[2]
        wrows = np.empty((n_chunks, n, m))
        wsum = np.empty((n_chunks, m))
        phase = np.empty((n_chunks, m), dtype=np.complex128)
        for k in prange(n_chunks):
            b0 = (k * n_b) // n_chunks
            b1 = ((k + 1) * n_b) // n_chunks
            _step_range(
                psi, owner, x_mid, x, base_phase, kin, kind, p1, p2, wpre, half_dt, b0, b1,
                wrows[k], wsum[k], phase[k],
            )  # fmt: skip


    @njit(cache=True, error_model="numpy")
    def step_rows_nb(psi, phases, kin):
        """psi[p, c] <- P_p F^-1 K F P_p psi[p, c] with a given phase row P_p = phases[p] per world."""
        axes = np.zeros(1, dtype=np.int64)
        n_p, n_c = psi.shape[0], psi.shape[1]
        for p in range(n_p):
            ph = phases[p]
            for c in range(n_c):
                _split_row(psi[p, c], ph, kin, axes)


def step_worlds_np(psi, owner, x_mid, x, base_phase, kin, kind, p1, p2, wpre, half_dt):
    n_b, n = x_mid.shape
    phases = np.zeros((n_b, n, x.shape[0]), dtype=complex)
    owner_phases_np(x_mid, x, base_phase, kind, p1, p2, wpre, half_dt, phases)
    alive = ~np.isnan(x_mid).any(axis=1)
    ph = phases[alive][:, owner]
    work = psi[alive] * ph
    # kin carries the 1/M of the inverse transform (the kernel's convention), hence norm="forward"
    work = np.fft.ifft(np.fft.fft(work, axis=-1) * kin, axis=-1, norm="forward") * ph
    psi[alive] = work


# --------------------------------------------------------------------------------------------------
# Point values and derivatives (local Lagrange stencil, Fornberg weights)


@njit(cache=True, inline="always", error_model="numpy")
def _fornberg(z, n_p, c):
    """Weights c[j, d] (d = 0, 1, 2) at z of the Lagrange interpolant through nodes 0 .. n_p - 1.

    B. Fornberg, Math. Comp. 51, 699 (1988): the recurrence over added nodes, O(n_p^2).
    """
    for j in range(n_p):
        for d in range(3):
            c[j, d] = 0.0
    c1 = 1.0
    c4 = -z  # node 0 minus z
    c[0, 0] = 1.0
    for i in range(1, n_p):
        mn = min(i, 2)
        c2 = 1.0
        c5 = c4
        c4 = i - z
        for j in range(i):
            c3 = float(i - j)
            c2 *= c3
            if j == i - 1:
                for d in range(mn, 0, -1):
                    c[i, d] = c1 * (d * c[i - 1, d - 1] - c5 * c[i - 1, d]) / c2
                c[i, 0] = -c1 * c5 * c[i - 1, 0] / c2
            for d in range(mn, 0, -1):
                c[j, d] = (c4 * c[j, d] - d * c[j, d - 1]) / c3
            c[j, 0] = c4 * c[j, 0] / c3
        c1 = c2


@njit(cache=True, error_model="numpy")
def _stencil_weights(xp, x0, dx, n_p, w):
    """Fornberg weights into w (n_p, 3) for the point xp; returns the first node's index (unwrapped)."""
    u = (xp - x0) / dx
    fl = np.floor(u)
    half = n_p // 2 - 1
    _fornberg(u - (fl - half), n_p, w)
    return np.int64(fl) - half


@njit(cache=True, error_model="numpy")
def stencil_eval_nb(psi, points, x0, dx, n_p, values, d1, d2):
    """Value, first and second derivative of each psi[b, c] at points[b, c or 0, p].

    ``points`` (B, C, P) or (B, 1, P) (the same points for every c: weights computed once per point);
    outputs (B, C, P) complex. The grid is periodic with period M dx; a NaN point gives NaN.
    ``n_p`` stencil nodes (even: centred on the interval holding the point).
    """
    n_b, n_c, m = psi.shape
    n_pt = points.shape[2]
    shared = points.shape[1] == 1
    w = np.empty((n_pt, n_p, 3))
    start = np.empty(n_pt, dtype=np.int64)
    bad = np.empty(n_pt, dtype=np.bool_)
    nan = complex(np.nan, np.nan)
    for b in range(n_b):
        for c in range(n_c):
            # Each CW row is visited once, all its points in turn (the row stays in cache).
            if c == 0 or not shared:
                for p in range(n_pt):
                    xp = points[b, 0 if shared else c, p]
                    bad[p] = np.isnan(xp)
                    if not bad[p]:
                        start[p] = _stencil_weights(xp, x0, dx, n_p, w[p])
            row = psi[b, c]
            for p in range(n_pt):
                if bad[p]:
                    values[b, c, p] = nan
                    d1[b, c, p] = nan
                    d2[b, c, p] = nan
                    continue
                v0 = 0j
                v1 = 0j
                v2 = 0j
                s0 = start[p]
                if s0 >= 0 and s0 + n_p <= m:  # interior: no wrap (integer % is slow)
                    for j in range(n_p):
                        f = row[s0 + j]
                        v0 += w[p, j, 0] * f
                        v1 += w[p, j, 1] * f
                        v2 += w[p, j, 2] * f
                else:
                    for j in range(n_p):
                        f = row[(s0 + j) % m]
                        v0 += w[p, j, 0] * f
                        v1 += w[p, j, 1] * f
                        v2 += w[p, j, 2] * f
                values[b, c, p] = v0
                d1[b, c, p] = v1 / dx
                d2[b, c, p] = v2 / (dx * dx)


def stencil_eval_np(psi, points, x0, dx, n_p, values, d1, d2):
    # Lagrange basis and its derivatives written out directly (products over the other nodes), an
    # independent construction of the same weights.
    n_b, n_c, m = psi.shape
    pts = np.broadcast_to(points, (n_b, n_c, points.shape[2]))
    bad = np.isnan(pts)
    u = np.where(bad, 0.0, (pts - x0) / dx)
    fl = np.floor(u)
    half = n_p // 2 - 1
    start = fl.astype(np.int64) - half
    z = u - (fl - half)  # position within nodes 0 .. n_p - 1
    nodes = np.arange(n_p, dtype=float)
    l0 = np.zeros((*z.shape, n_p))
    l1 = np.zeros_like(l0)
    l2 = np.zeros_like(l0)
    for j in range(n_p):
        others = [k for k in range(n_p) if k != j]
        den = np.prod(nodes[j] - nodes[others])
        l0[..., j] = np.prod([z - k for k in others], axis=0) / den
        s1 = np.zeros_like(z)
        s2 = np.zeros_like(z)
        for k in others:
            rest = [q for q in others if q != k]
            s1 += np.prod([z - q for q in rest], axis=0) if rest else 1.0
            for q in rest:
                rest2 = [r for r in rest if r != q]
                s2 += np.prod([z - r for r in rest2], axis=0) if rest2 else 1.0
        l1[..., j] = s1 / den
        l2[..., j] = s2 / den
    idx = (start[..., None] + np.arange(n_p)) % m
    f = np.take_along_axis(psi[:, :, None, :], idx, axis=-1)
    values[...] = np.where(bad, np.nan, np.sum(l0 * f, axis=-1))
    d1[...] = np.where(bad, np.nan, np.sum(l1 * f, axis=-1) / dx)
    d2[...] = np.where(bad, np.nan, np.sum(l2 * f, axis=-1) / dx**2)


def trig_eval_np(psi, points, x0, dx, values, d1, d2):
    """Exact trigonometric interpolation (the band-limited function the grid represents).

    psi(X) = (1/M) sum_k c_k e^{i k (X - x0)}, derivatives by i k and -k^2. The Nyquist mode (even M)
    enters as c cos(k_N (X - x0)), the symmetric choice that keeps a real grid function real.
    Reference for tests and for choosing the stencil; O(M) per point.
    """
    n_b, n_c, m = psi.shape
    pts = np.broadcast_to(points, (n_b, n_c, points.shape[2]))
    coef = np.fft.fft(psi, axis=-1) / m
    k = 2 * np.pi * np.fft.fftfreq(m, dx)
    ph_k = np.ones(m)
    if m % 2 == 0:
        ph_k[m // 2] = 0.0  # handled separately as a cosine
    s = (pts - x0)[..., None]
    e = np.exp(1j * k * s) * ph_k
    cp = coef[:, :, None, :]
    values[...] = np.sum(cp * e, axis=-1)
    d1[...] = np.sum(cp * (1j * k) * e, axis=-1)
    d2[...] = np.sum(cp * (-k * k) * e, axis=-1)
    if m % 2 == 0:
        kn = np.pi / dx
        cn = coef[:, :, None, m // 2]
        sn = s[..., 0]
        values[...] += cn * np.cos(kn * sn)
        d1[...] += -cn * kn * np.sin(kn * sn)
        d2[...] += -cn * kn * kn * np.cos(kn * sn)
