"""numba kernels of the grid observables (bohmpower.exact.observables), each with a plain-numpy twin.

Private: arrays and scalars only, no validation (the caller, :mod:`bohmpower.exact.observables`, shapes
everything). The ``_np`` twins compute the same numbers with numpy broadcasting; the tests hold each
kernel against its twin to round-off. Atomic units.

Layout. The observables work in the "X layout": the wavefunction with the marginal's own axis k moved
last (contiguous), the other N - 1 axes leading. A slab is a block of ``rows`` consecutive rows of the
(n^(N-1), n) view; row m carries the other electrons' grid indices ``rowidx[m, :]``. Fine points along
axis k are split by parity: the even fine points are the grid points, the odd ones the midpoints.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Rows of the accumulator filled by fine_marginals_* (order fixed: observables._MARGS).
N_MARGS = 10


@njit(cache=True)
def abs2_sum_max_nb(psi2: np.ndarray) -> tuple[float, float]:
    """(sum |psi|^2, max |psi|^2) over a 2D view (rows, n); per-row partial sums keep round-off low."""
    total = 0.0
    big = 0.0
    for m in range(psi2.shape[0]):
        part = 0.0
        for r in range(psi2.shape[1]):
            z = psi2[m, r]
            v = z.real * z.real + z.imag * z.imag
            part += v
            big = max(big, v)
        total += part
    return total, big


def abs2_sum_max_np(psi2: np.ndarray) -> tuple[float, float]:
    """numpy twin of :func:`abs2_sum_max_nb`."""
    rho = psi2.real**2 + psi2.imag**2
    return float(rho.sum()), float(rho.max())


@njit(cache=True)
def spectral_products_nb(src: np.ndarray, muls: np.ndarray, out: np.ndarray) -> None:
    """out[j, m, r] = src[m, r] muls[j, r]: one pass over the spectra ``src`` (rows, n) for every
    multiplier (K, n) (derivatives, half-step shifts), each into its own (rows, n) buffer of ``out``
    (K, rows, n), ready for its inverse FFT."""
    n_mul = muls.shape[0]
    for m in range(src.shape[0]):
        for r in range(src.shape[1]):
            z = src[m, r]
            for j in range(n_mul):
                out[j, m, r] = z * muls[j, r]


def spectral_products_np(src: np.ndarray, muls: np.ndarray, out: np.ndarray) -> None:
    """numpy twin of :func:`spectral_products_nb`."""
    np.multiply(src[None, :, :], muls[:, None, :], out=out)


@njit(cache=True)
def potential_times_nb(
    x3: np.ndarray,
    v3: np.ndarray,
    g3: np.ndarray,
    d: np.ndarray,
    n_p: int,
    absorbing: bool,
    out3: np.ndarray,
) -> None:
    """out = (V + sum_a d(x_a)) X - i Gamma X on a (a, b, n) view of the N-d grid (N = n_p <= 3).

    ``v3`` is the static potential, ``g3`` Gamma_tot (ignored unless ``absorbing``), ``d`` (n,) the
    one-body drive q phi(x, t) added along every axis that exists (the leading axes of length 1 for
    N < 3 are dummies).
    """
    na, nb, n = x3.shape
    for i0 in range(na):
        for i1 in range(nb):
            base = 0.0
            if n_p == 3:
                base += d[i0]
            if n_p >= 2:
                base += d[i1]
            for r in range(n):
                z = x3[i0, i1, r]
                v = v3[i0, i1, r] + (base + d[r])
                re = v * z.real
                im = v * z.imag
                if absorbing:
                    g = g3[i0, i1, r]
                    re += g * z.imag
                    im -= g * z.real
                out3[i0, i1, r] = complex(re, im)


def potential_times_np(
    x3: np.ndarray,
    v3: np.ndarray,
    g3: np.ndarray,
    d: np.ndarray,
    n_p: int,
    absorbing: bool,
    out3: np.ndarray,
) -> None:
    """numpy twin of :func:`potential_times_nb`."""
    drive = d[None, None, :] + (d[None, :, None] if n_p >= 2 else 0.0)
    if n_p == 3:
        drive = drive + d[:, None, None]
    out = (v3 + drive) * x3
    if absorbing:
        out = out - 1j * g3 * x3
    out3[...] = out


@njit(cache=True, error_model="numpy")
def fine_marginals_nb(
    p0: np.ndarray,
    p1: np.ndarray,
    tk: np.ndarray,
    f0: np.ndarray,
    f1: np.ndarray,
    dj: np.ndarray,
    v1: np.ndarray,
    gam1: np.ndarray,
    wtab: np.ndarray,
    ftab: np.ndarray,
    rowidx: np.ndarray,
    gamrow: np.ndarray,
    inv_m: float,
    floor: float,
    use_w: bool,
    use_dw: bool,
    absorbing: bool,
    acc: np.ndarray,
) -> None:
    """Accumulate the marginal densities of one slab at one parity of fine points.

    Parameters
    ----------
    p0, p1, tk : ndarray, complex, shape (rows, n)
        Psi, d_k Psi and -(1/2m) d_k^2 Psi at these fine points.
    f0, f1 : ndarray, complex, shape (rows, n)
        Phi = H_eff Psi and d_k Phi.
    dj : ndarray, complex, shape (n_o, rows, n)
        d_j Psi for the other electrons (read only when ``use_dw``).
    v1 : ndarray, shape (n,)
        U0 + chi q phi at these fine points [hartree].
    gam1 : ndarray, shape (n,)
        Gamma at these fine points [hartree].
    wtab, ftab : ndarray, shape (2n - 1,)
        W(x_k - x_j) and F = -W'(x_k - x_j) at these fine points, indexed by r - j + n - 1.
    rowidx : ndarray, int, shape (rows, n_o)
        Other electrons' grid indices of each row.
    gamrow : ndarray, shape (rows,)
        sum over the other electrons of Gamma(x_j) per row.
    inv_m, floor : float
        1/m and the density cutoff rho_floor.
    acc : ndarray, shape (N_MARGS, n)
        Accumulator (rows summed, not yet multiplied by dx^(N-1)): rho, J_k, Re[Psi* h_k Psi],
        (1/2) d_k d_t rho, Im[(d_k Psi)* d_k Phi], the potential part of p, j_E, L_k, s_C, a.
    """
    rows, n = p0.shape
    n_o = rowidx.shape[1]
    # Rows outer, points inner: every input is read along its contiguous axis (the transposed order,
    # with the ten sums in registers, strides by a whole row per access and was measured 3-4x slower
    # at n = 320-512). The sums go to a local (N_MARGS, n) array, which aliases no input, and are
    # added to ``acc`` once; per point the rows are summed in the same order as before.
    loc = np.zeros((N_MARGS, n))
    vrow = np.empty(n)
    for m in range(rows):
        for r in range(n):
            vrow[r] = v1[r]
        if use_w:
            for o in range(n_o):
                base = n - 1 - rowidx[m, o]
                for r in range(n):
                    vrow[r] += 0.5 * wtab[base + r]
        g_m = gamrow[m]
        for r in range(n):
            v = vrow[r]
            a = p0[m, r]
            b = p1[m, r]
            c = tk[m, r]
            e = f0[m, r]
            f = f1[m, r]
            rho = a.real * a.real + a.imag * a.imag
            jk = (a.real * b.imag - a.imag * b.real) * inv_m
            drho = 2.0 * (a.real * b.real + a.imag * b.imag)
            erho = (a.real * c.real + a.imag * c.imag) + v * rho
            im_pf = a.real * e.imag - a.imag * e.real
            g = (a.real * f.imag - a.imag * f.real) + (b.real * e.imag - b.imag * e.real)
            h1 = b.real * f.imag - b.imag * f.real
            inv = 1.0 / rho if rho >= floor else 0.0
            loc[0, r] += rho
            loc[1, r] += jk
            loc[2, r] += erho
            loc[3, r] += g
            loc[4, r] += h1
            loc[5, r] += 2.0 * v * im_pf
            loc[6, r] += jk * erho * inv
            loc[7, r] += 0.25 * inv_m * (drho * (2.0 * im_pf) * inv - 2.0 * g)
            if absorbing:
                loc[9, r] += 2.0 * (gam1[r] + g_m) * erho
            if use_dw:
                for o in range(n_o):
                    d = dj[o, m, r]
                    jj = (a.real * d.imag - a.imag * d.real) * inv_m
                    loc[8, r] += 0.5 * ftab[n - 1 - rowidx[m, o] + r] * (jk + jj)
    for q in range(N_MARGS):
        for r in range(n):
            acc[q, r] += loc[q, r]


def fine_marginals_np(
    p0: np.ndarray,
    p1: np.ndarray,
    tk: np.ndarray,
    f0: np.ndarray,
    f1: np.ndarray,
    dj: np.ndarray,
    v1: np.ndarray,
    gam1: np.ndarray,
    wtab: np.ndarray,
    ftab: np.ndarray,
    rowidx: np.ndarray,
    gamrow: np.ndarray,
    inv_m: float,
    floor: float,
    use_w: bool,
    use_dw: bool,
    absorbing: bool,
    acc: np.ndarray,
) -> None:
    """numpy twin of :func:`fine_marginals_nb` (same arguments)."""
    rows, n = p0.shape
    n_o = rowidx.shape[1]
    r = np.arange(n)
    idx = [n - 1 - rowidx[:, o][:, None] + r[None, :] for o in range(n_o)]  # (rows, n) each
    v = np.broadcast_to(v1, (rows, n)).copy()
    if use_w:
        for o in range(n_o):
            v += 0.5 * wtab[idx[o]]
    cp = np.conj(p0)
    rho = p0.real**2 + p0.imag**2
    cp1 = cp * p1
    jk = cp1.imag * inv_m
    drho = 2.0 * cp1.real
    erho = (cp * tk).real + v * rho
    im_pf = (cp * f0).imag
    g = (cp * f1).imag + (np.conj(p1) * f0).imag
    h1 = (np.conj(p1) * f1).imag
    ok = rho >= floor
    safe = np.where(ok, rho, 1.0)
    je = np.where(ok, jk * erho / safe, 0.0)
    lr = np.where(ok, drho * (2.0 * im_pf) / safe, 0.0)
    acc[0] += rho.sum(axis=0)
    acc[1] += jk.sum(axis=0)
    acc[2] += erho.sum(axis=0)
    acc[3] += g.sum(axis=0)
    acc[4] += h1.sum(axis=0)
    acc[5] += (2.0 * v * im_pf).sum(axis=0)
    acc[6] += je.sum(axis=0)
    acc[7] += (0.25 * inv_m * (lr - 2.0 * g)).sum(axis=0)
    if use_dw:
        sc = np.zeros((rows, n))
        for o in range(n_o):
            jj = (cp * dj[o]).imag * inv_m
            sc += 0.5 * ftab[idx[o]] * (jk + jj)
        acc[8] += sc.sum(axis=0)
    if absorbing:
        acc[9] += (2.0 * (gam1[None, :] + gamrow[:, None]) * erho).sum(axis=0)


@njit(cache=True)
def edge_sums_nb(
    st: np.ndarray,
    base: np.ndarray,
    halfw: np.ndarray,
    use_w: bool,
    inv_m: float,
    floor: float,
    out: np.ndarray,
) -> None:
    """out[:, e] = sums over the points j of (j_E, L_k, J_k) on the edge slices of edge e.

    ``st`` (5, E, M): Psi, d_k Psi, d_k^2 Psi, Phi and d_k Phi on the slice x_k = a_e at M points of
    the other electron; ``base`` (E,) the one-body potential U0(a) + chi q phi(a, t) of h_k,
    ``halfw`` (E, M) the half pair potential (1/2) W(a - y_j) (read when ``use_w``). Ratios by rho
    are 0 where rho < ``floor``. With e = Re[Psi* h_k Psi] / rho and rho = |Psi|^2:

        J_k = (1/m) Im[Psi* d_k Psi],   j_E = J_k e,
        L_k = (1/4m) (d_k rho d_t rho / rho - 2 Im[Psi* d_k Phi + (d_k Psi)* Phi]).
    """
    n_e, n_pts = st.shape[1], st.shape[2]
    for e in range(n_e):
        s_je = 0.0
        s_lk = 0.0
        s_jk = 0.0
        for j in range(n_pts):
            p0 = st[0, e, j]
            p1 = st[1, e, j]
            p2 = st[2, e, j]
            f0 = st[3, e, j]
            f1 = st[4, e, j]
            cp = p0.conjugate()
            rho = p0.real * p0.real + p0.imag * p0.imag
            cp1 = cp * p1
            jk = cp1.imag * inv_m
            v = base[e] + (halfw[e, j] if use_w else 0.0)
            erho = (cp * p2).real * (-0.5 * inv_m) + v * rho
            g = (cp * f1).imag + (p1.conjugate() * f0).imag
            s_jk += jk
            if rho >= floor:
                s_je += jk * erho / rho
                s_lk += 0.25 * inv_m * (2.0 * cp1.real * 2.0 * (cp * f0).imag / rho - 2.0 * g)
            else:
                s_lk += 0.25 * inv_m * (-2.0 * g)
        out[0, e] = s_je
        out[1, e] = s_lk
        out[2, e] = s_jk


def edge_sums_np(
    st: np.ndarray,
    base: np.ndarray,
    halfw: np.ndarray,
    use_w: bool,
    inv_m: float,
    floor: float,
    out: np.ndarray,
) -> None:
    """numpy twin of :func:`edge_sums_nb`."""
    p0, p1, p2, f0, f1 = st
    cp = np.conj(p0)
    rho = p0.real**2 + p0.imag**2
    jk = (cp * p1).imag * inv_m
    v = base[:, None] + (halfw if use_w else 0.0)
    erho = (cp * p2).real * (-0.5 * inv_m) + v * rho
    drho = 2.0 * (cp * p1).real
    dtrho = 2.0 * (cp * f0).imag
    g = (cp * f1).imag + (np.conj(p1) * f0).imag
    ok = rho >= floor
    inv = np.where(ok, 1.0 / np.where(ok, rho, 1.0), 0.0)
    out[0] = (jk * erho * inv).sum(axis=1)
    out[1] = (0.25 * inv_m * (drho * dtrho * inv - 2.0 * g)).sum(axis=1)
    out[2] = jk.sum(axis=1)


@njit(cache=True)
def pn_direct_nb(
    p: np.ndarray,
    dk: np.ndarray,
    dkk: np.ndarray,
    dj: np.ndarray,
    dkj: np.ndarray,
    dkkj: np.ndarray,
    k: int,
    j: int,
    mass: float,
    floor: float,
    out: np.ndarray,
) -> None:
    """out[i_k] += X_kj and out[i_j] -= X_kj summed over the grid (the direct P_N integrand's pair
    (k, j) marginals, observables._pn_direct_marginal), in one pass.

    Arrays (n0, n1, n2) (a leading axis of length 1 for N = 2): Psi and its spectral derivatives
    d_k, d_k^2, d_j, d_k d_j, d_k^2 d_j; ``k``, ``j`` are their axes in this view. With the ratios
    r_a = Psi* a / rho (0 where rho < ``floor``), v_k = Im r_k / m,
    d_j v_k = Im(r_kj - r_k r_j) / m, d_j Q_k = -(1/2m) Re(r_kkj - r_kk r_j) - m v_k d_j v_k and
    X_kj = rho v_j d_j Q_k.
    """
    n0, n1, n2 = p.shape
    inv_m = 1.0 / mass
    for a in range(n0):
        for b in range(n1):
            for c in range(n2):
                z = p[a, b, c]
                rho = z.real * z.real + z.imag * z.imag
                if rho < floor:
                    continue
                cz = z.conjugate() / rho
                r_k = cz * dk[a, b, c]
                r_kk = cz * dkk[a, b, c]
                r_j = cz * dj[a, b, c]
                r_kj = cz * dkj[a, b, c]
                r_kkj = cz * dkkj[a, b, c]
                v_k = r_k.imag * inv_m
                dv = (r_kj - r_k * r_j).imag * inv_m
                dq = -0.5 * inv_m * (r_kkj - r_kk * r_j).real - mass * v_k * dv
                x = rho * r_j.imag * inv_m * dq
                ik = a if k == 0 else (b if k == 1 else c)
                ij = a if j == 0 else (b if j == 1 else c)
                out[ik] += x
                out[ij] -= x


def pn_direct_np(
    p: np.ndarray,
    dk: np.ndarray,
    dkk: np.ndarray,
    dj: np.ndarray,
    dkj: np.ndarray,
    dkkj: np.ndarray,
    k: int,
    j: int,
    mass: float,
    floor: float,
    out: np.ndarray,
) -> None:
    """numpy twin of :func:`pn_direct_nb`."""
    rho = p.real**2 + p.imag**2
    ok = rho >= floor
    cz = np.where(ok, np.conj(p) / np.where(ok, rho, 1.0), 0.0)
    r_k, r_kk, r_j, r_kj, r_kkj = (cz * d for d in (dk, dkk, dj, dkj, dkkj))
    v_k = r_k.imag / mass
    dv = (r_kj - r_k * r_j).imag / mass
    dq = -0.5 / mass * (r_kkj - r_kk * r_j).real - mass * v_k * dv
    x = rho * (r_j.imag / mass) * dq
    out[:p.shape[k]] += x.sum(axis=tuple(a for a in range(3) if a != k))
    out[:p.shape[j]] -= x.sum(axis=tuple(a for a in range(3) if a != j))
