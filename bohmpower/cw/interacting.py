"""Interacting conditional wavefunctions (ICWF): a correlated CW method that converges with the basis.

After G. Albareda, A. Kelly, A. Rubio, Phys. Rev. Materials 3, 023803 (2019). The many-electron
wavefunction is expanded in the conditional wavefunctions (CWs) of ``n_basis`` *basis worlds*,

.. math::

    \\Psi(x_1..x_N, t) = \\sum_\\beta C_\\beta(t)\\, \\Phi_\\beta(x_1..x_N, t), \\qquad
    \\Phi_\\beta = \\prod_j \\phi^\\beta_j(x_j) \\ \\text{(distinguishable)}, \\qquad
    \\Phi_\\beta = \\det[\\phi^\\beta_l(x_k)] \\ \\text{(fermions)},

and the coefficients follow the Dirac-Frenkel projection of the Schroedinger equation on that basis
(hbar = 1), ``i S dC/dt = (H - D) C``.

Choices (and why)
-----------------
- **Basis worlds** are configurations X^beta sampled from |Psi0|^2 (their own seed streams, ids
  ``BASIS_ID_OFFSET + beta``), each carrying the zeroth-order CWs phi^beta_j(x, 0) = Psi0(X^beta_1 .. x
  .. X^beta_N) (for a Slater determinant: the cofactor slice) that evolve by the Hermitian conditional
  equation i d_t phi^beta_j = [T + U0 + q phi + sum_{k != j} W(x - X^beta_k(t))] phi^beta_j, with
  X^beta guided by its own CWs: exactly the zeroth-order engine (``cw.engine.CWEnsemble``), so the basis
  explores the regions the interacting dynamics visits.
- **Matrices.** Because T, U0 and q phi cancel between H and D,

  .. math::

      K_{\\alpha\\beta} = \\langle \\Phi_\\alpha | H - i\\partial_t | \\Phi_\\beta \\rangle
        = \\langle \\Phi_\\alpha | \\sum_{j<k} W(x_j - x_k)
          - \\sum_j \\sum_{k \\ne j} W(x_j - X^\\beta_k) | \\Phi_\\beta \\rangle .

  With O^{ab}_{il} = <phi^a_i|phi^b_l>, S_ab = s(O) with s = det O (fermions: <Phi_a| applied
  to the antisymmetriser of Phi_b) or prod_l O_ll (distinguishable electrons), and by the Loewdin
  rules (``overlap_derivatives``: s is linear in each column of O)

  .. math::

      K_{ab} = \\sum_{j<k} \\sum_{i,i'} W2_{ij, i'k}
          \\frac{\\partial^2 s}{\\partial O_{ij} \\partial O_{i'k}}
          - \\sum_{i,j} U_{ij} \\frac{\\partial s}{\\partial O_{ij}},

  W2_{ij,i'j'} = int int conj(phi^a_i(x)) phi^b_j(x) W(x - y) conj(phi^a_i'(y)) phi^b_j'(y) and
  U_{ij} = <phi^a_i| sum_{k != j} W(. - X^b_k) |phi^b_j>. (Both S and K of the fermion case are N! times
  <A Phi_a|.|A Phi_b>; the common factor drops out of the equation.)
- **Regularised solve.** S is Hermitian positive semi-definite and ill-conditioned (with a Slater Psi0
  every antisymmetrised basis function is proportional to Psi0 at t = 0: rank 1). dC/dt = -i S^+ K C
  with S^+ the pseudo-inverse from the eigen-decomposition of S, keeping eigenvalues above
  ``overlap_cutoff`` times the largest. The number of kept eigenvalues (the effective basis size) is
  recorded at every step.
- **Time step.** After the basis worlds are stepped (second order), C(t + dt) = exp(-i dt (G(t) +
  G(t + dt))/2) C(t), G = S^+ K: second order, like the rest of the engine.
- **C(0)** is the least-squares fit S C = <Phi_a|Psi0> (pseudo-inverse), scaled to unit norm.
- **Guidance.** The measured worlds (``trajectories.count``, the existing sample ids) are guided by the
  reconstructed Psi: r1_k = d_k Psi / Psi and r2_k = d_k^2 Psi / Psi at the configuration are sums over
  the basis of determinants (or products) of the CWs' values and derivatives at the N positions, so
  v_k, Q_k and e_k, and every estimator, follow unchanged.
- **A basis world that is removed** (absorbed, out of the cell, or numerically failed in its own
  zeroth-order guidance) is dropped and C is refitted on the remaining basis (least squares), so Psi
  is continuous across the removal.

Health (checked every step): the norm of Psi, N! C^+ S C for fermions, C^+ S C otherwise, must stay
within ``norm_tolerance`` of 1 without absorbing layers (and never grow beyond it with them); C, S and
K must be finite. A run that fails stops with the step, the time and the cause.

Cost per step: n_basis N CW propagations; the matrices cost O(n_basis^2 N^2 n_x^2) (the pair
interaction, one matrix product with the n_x x n_x table of W) plus O(n_basis^3) (eigen-decomposition
and exponential); the guidance of B measured worlds O(B n_basis N) stencil evaluations and B n_basis N
small determinants. Every block of measured worlds propagates the same basis (deterministic), so blocks
stay independent: results do not depend on the rank count. A rank's blocks are one unit of work
(``driver.CWSolver.run_blocks``), whose state the checkpoint keeps mid-run
(``checkpoint.UnitState``).
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import time as _time
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from bohmpower.errors import ConfigError, NumericalError
from bohmpower.model.state import TrajectoryState

from .engine import _STATE_KEYS, SPECTRAL_EDGE_TOLERANCE
from .guidance import (
    PointPotentials,
    velocity_and_quantum_potential,
)

__all__ = [
    "PairInteraction",
    "BASIS_ID_OFFSET",
    "BasisMatrices",
    "InteractingEnsemble",
    "basis_matrices",
    "one_body_matrix",
    "overlap_derivatives",
    "permutations_with_signs",
    "pseudo_inverse",
    "reconstructed_ratios",
]

log = logging.getLogger(__name__)

#: Sample ids of the basis worlds start here (trajectory ids never reach it): independent streams.
BASIS_ID_OFFSET = 2**40
#: Pairs (a <= b) of basis functions per chunk of the pair matrix (the unit shared over MPI ranks).
PAIR_CHUNK = 1024


# ---------------------------------------------------------------------------------------- algebra
@functools.lru_cache(maxsize=None)
def permutations_with_signs(n: int, antisymmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Permutations sigma of 0..n-1 (rows) and their signs; the identity alone when not antisymmetric.

    Cached: the matrices ask for them at every step (treat the arrays as read-only)."""
    if not antisymmetric:
        return np.arange(n)[None, :], np.ones(1)
    perms = np.array(list(itertools.permutations(range(n))), dtype=np.int64).reshape(-1, n)
    signs = np.array([np.linalg.det(np.eye(n)[p]) for p in perms]).round()
    return perms, signs


def _stacked_det(a: np.ndarray) -> np.ndarray:
    """det of a stack of n x n matrices (..., n, n): closed forms up to n = 3 (a 0 x 0 matrix has
    det 1), LU (``numpy.linalg.det``) beyond."""
    n = a.shape[-1]
    if n == 0:
        return np.ones(a.shape[:-2], dtype=a.dtype)
    if n == 1:
        return a[..., 0, 0].copy()
    if n == 2:
        return a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] * a[..., 1, 0]
    if n == 3:
        return (a[..., 0, 0] * (a[..., 1, 1] * a[..., 2, 2] - a[..., 1, 2] * a[..., 2, 1])
                - a[..., 0, 1] * (a[..., 1, 0] * a[..., 2, 2] - a[..., 1, 2] * a[..., 2, 0])
                + a[..., 0, 2] * (a[..., 1, 0] * a[..., 2, 1] - a[..., 1, 1] * a[..., 2, 0]))
    return np.linalg.det(a)


def overlap_derivatives(ov: np.ndarray, antisymmetric: bool, order: int = 2
                        ) -> tuple[np.ndarray, np.ndarray | None, dict | None]:
    """The overlap of two basis functions and its first and second derivatives in the one-body
    overlaps (the Loewdin rules), for a stack of N x N one-body overlap matrices.

    With O_il = <phi^a_i|phi^b_l>, the overlap s(O) = <Phi_a|Phi_b> is det O (fermions, the
    antisymmetriser's N! dropped) or prod_l O_ll (distinguishable electrons), and it is linear in
    each column of O. So a one-body operator's matrix element is sum_il h_il ds/dO_il and a pair
    operator's is sum_{l<l'} sum_{i,i'} w_{il,i'l'} d^2 s / dO_il dO_i'l'. For a determinant the
    derivatives are signed minors (cofactors and second-order cofactors), determinants of the
    (N-1)- and (N-2)-rank submatrices (``_stacked_det``): no inverse of O, so a
    singular O (orthogonal orbitals) needs no care, and the cost is polynomial in N (N^2 + N^2
    (N-1)^2 / 4 minors) instead of the N! terms of the permutation sum.

    Parameters
    ----------
    ov : ndarray, complex, shape (P, N, N)
    antisymmetric : bool
    order : int
        Highest derivative wanted (0, 1 or 2); the others are returned as None.

    Returns
    -------
    s : ndarray (P,)
    d1 : ndarray (P, N, N)
        d1[p, i, l] = ds/dO_il.
    d2 : dict
        (l, l') with l < l' -> ndarray (P, N, N), [p, i, i'] = d^2 s / dO_il dO_i'l' (zero for
        i = i' with a determinant).
    """
    ov = np.asarray(ov)
    n = ov.shape[-1]
    d1 = np.zeros_like(ov) if order >= 1 else None
    d2: dict | None = {} if order >= 2 else None
    if not antisymmetric:
        diag = np.diagonal(ov, axis1=1, axis2=2)
        s = np.prod(diag, axis=-1)
        for j in range(n if order >= 1 else 0):
            d1[:, j, j] = np.prod(np.delete(diag, j, axis=-1), axis=-1)
            for k in range(j + 1, n if order >= 2 else 0):
                d2[j, k] = np.zeros_like(ov)
                d2[j, k][:, j, k] = np.prod(np.delete(diag, [j, k], axis=-1), axis=-1)
        return s, d1, d2
    s = _stacked_det(ov)
    for i in range(n if order >= 1 else 0):
        without_i = np.delete(ov, i, axis=1)
        for j in range(n):
            d1[:, i, j] = (-1) ** (i + j) * _stacked_det(np.delete(without_i, j, axis=2))
    for j in range(n if order >= 2 else 0):
        for k in range(j + 1, n):
            block = np.zeros_like(ov)
            cols = np.delete(ov, [j, k], axis=2)
            for i in range(n):
                for i2 in range(i + 1, n):
                    # Laplace expansion of det O along columns j and k: rows (i, i2) in that
                    # order carry (-1)^(i + i2 + j + k) times the minor, (i2, i) the opposite
                    minor = _stacked_det(np.delete(cols, [i, i2], axis=1))
                    sign = (-1) ** (i + i2 + j + k)
                    block[:, i, i2] = sign * minor
                    block[:, i2, i] = -sign * minor
            d2[j, k] = block
    return s, d1, d2


def pseudo_inverse(s: np.ndarray, cutoff: float) -> tuple[np.ndarray, int, float]:
    """Pseudo-inverse of a Hermitian PSD matrix, eigenvalues below ``cutoff * max`` dropped.

    Returns
    -------
    s_plus : ndarray (M, M)
    rank : int
        Eigenvalues kept.
    condition : float
        Largest over smallest kept eigenvalue.
    """
    s = 0.5 * (s + s.conj().T)
    lam, vec = np.linalg.eigh(s)
    top = lam[-1]
    if not (np.isfinite(top) and top > 0):
        raise FloatingPointError("overlap matrix S is not positive")
    keep = lam > cutoff * top
    vk = vec[:, keep]
    s_plus = (vk / lam[keep]) @ vk.conj().T
    return s_plus, int(keep.sum()), float(top / lam[keep][0])


@dataclass
class BasisMatrices:
    """S, K, the one-body overlaps and the first derivatives of S in them (``overlap_derivatives``)
    of a basis (module Choices), shapes (M, M) and (M, M, N, N); ``pair`` is the pair part of K,
    <Phi_a| sum_{j<k} W |Phi_b> (None without interaction)."""

    s: np.ndarray
    k: np.ndarray
    overlaps: np.ndarray
    cofactors: np.ndarray
    pair: np.ndarray | None = None


def basis_matrices(psi: np.ndarray, X: np.ndarray, x: np.ndarray, pair: PairInteraction | None,
                   antisymmetric: bool, comm=None) -> BasisMatrices:
    """S and K = <Phi_a|H - i d_t|Phi_b> of the basis (module Choices).

    Parameters
    ----------
    psi : ndarray, complex, shape (M, N, n_x)
        CWs of the basis worlds, phi^b_j on the grid.
    X : ndarray, shape (M, N)
        Positions of the basis worlds [bohr] (the X^b_k of their conditional potentials).
    x : ndarray, shape (n_x,)
        Uniform grid [bohr].
    pair : PairInteraction or None
        The pair interaction on the grid; None without interaction (K = 0).
    antisymmetric : bool
        Fermions (determinants) or distinguishable electrons (products).
    comm : MPI communicator, optional
        Share the pair matrix's chunks over the ranks (``PairInteraction.pair_matrix``); every rank
        gets the same matrices, bit for bit those of a serial run.

    Returns
    -------
    BasisMatrices
    """
    m, n, n_x = psi.shape
    x = np.asarray(x, dtype=float)
    dx = float(x[1] - x[0])
    cpsi = psi.conj()
    # O[a, b, i, l] = <phi^a_i | phi^b_l>
    ov = np.einsum("aix,blx->abil", cpsi, psi, optimize=True) * dx
    s, d1, _ = overlap_derivatives(ov.reshape(m * m, n, n), antisymmetric, order=1)
    s, d1 = s.reshape(m, m), d1.reshape(m, m, n, n)
    k = np.zeros((m, m), dtype=complex)
    if pair is None or n < 2:
        return BasisMatrices(s, k, ov, d1)
    w_fn = pair.w
    # the one-body part: U_ij = <phi^a_i | V^b_j | phi^b_j>, with V^b_j(x) = sum_{k != j} W(x - X^b_k)
    # the conditional interaction that b's CW j evolves under
    vb = np.zeros((m, n, n_x))
    for j in range(n):
        for kk in range(n):
            if kk != j:
                vb[:, j, :] += w_fn(x[None, :] - X[:, kk, None])
    k -= one_body_matrix(psi, vb * psi, d1, dx)
    w_pair = pair.pair_matrix(psi, ov, antisymmetric, comm=comm) * dx * dx
    k += w_pair
    return BasisMatrices(s, k, ov, d1, w_pair)


def one_body_matrix(psi: np.ndarray, h_psi: np.ndarray, cofactors: np.ndarray,
                    dx: float) -> np.ndarray:
    """<Phi_a| sum_j h(x_j) |Phi_b> for a one-body operator h, given h applied to every CW.

    psi, h_psi (M, N, n_x); ``cofactors`` (M, M, N, N) the first derivatives of S in the one-body
    overlaps (``overlap_derivatives``, ``BasisMatrices.cofactors``): the matrix element is
    sum_ij h_ij dS/dO_ij with h_ij = <phi^a_i|h_j|phi^b_j> (h may depend on the orbital j, as the
    conditional interaction does)."""
    hij = np.einsum("aix,bjx->abij", psi.conj(), h_psi, optimize=True) * dx
    return np.einsum("abij,abij->ab", hij, cofactors)


class PairInteraction:
    """The pair interaction W on the grid and the basis matrix of sum_{j<k} W(x_j - x_k).

    W(x_i - x_j) is a Toeplitz matrix (the plain distance, as in the conditional potentials), applied
    through zero-padded FFTs of length 2 n_x: O(n_x log n_x) per pair density instead of O(n_x^2) for
    the table (``table``, the reference in the tests); W of a soft Coulomb pair is not of low rank on a
    grid whose spacing is near the softening, so no factorisation helps.
    """

    def __init__(self, x: np.ndarray, w, workers: int = 1) -> None:
        x = np.asarray(x, dtype=float)
        self.x, self.w, self.n_x = x, w, x.size
        self.workers = int(workers)
        dx = float(x[1] - x[0])
        d = np.arange(self.n_x) * dx
        kernel = np.zeros(2 * self.n_x)
        kernel[: self.n_x] = w(d)
        kernel[self.n_x + 1 :] = w(-d[1:][::-1])
        self._kernel_hat = np.fft.fft(kernel)

    def table(self) -> np.ndarray:
        """W(x_i - x_j), shape (n_x, n_x) [hartree]."""
        return np.asarray(self.w(self.x[:, None] - self.x[None, :]), dtype=float)

    def pair_matrix(self, psi: np.ndarray, ov: np.ndarray, antisymmetric: bool,
                    chunk: int = PAIR_CHUNK, kernels: bool = True, comm=None) -> np.ndarray:
        """<Phi_a| sum_{j<k} W(x_j - x_k) |Phi_b> without the dx^2 (module Choices), shape (M, M).

        sum_{j<k} sum_{i,i'} W2_{ij,i'k} d^2 S / dO_ij dO_i'k, the second derivatives of the overlap
        in the one-body overlaps ``ov`` (``overlap_derivatives``: second-order cofactors for
        fermions; for products only i = j, i' = k). The matrix is Hermitian, so only a <= b is
        computed, in chunks of ``chunk`` pairs. Each term W2 = sum_xy f(x) W(x - y) g(y) of two pair
        densities f = conj(phi^a_i) phi^b_j, g = conj(phi^a_i') phi^b_k is evaluated by Parseval
        on the zero-padded length L = 2 n_x,
        (1/L) sum_q F(-q) W^(q) G(q): one forward FFT per pair density, no inverse. ``kernels``:
        the numba kernels (default) or their numpy twins.

        With an MPI ``comm`` the chunks are dealt round-robin over the ranks and the pieces
        exchanged by one allgather: M (M + 1) / 2 complex numbers (16 bytes each) reach every rank per
        call. The chunk bounds do not depend on the rank count, so the matrix is the same bit for bit.
        """
        import scipy.fft as sfft

        from ._icwf_kernels import pair_densities_nb, parseval_sums_nb

        m, n, n_x = psi.shape
        length = 2 * n_x
        rev = (-np.arange(length)) % length
        w_hat = np.ascontiguousarray(self._kernel_hat / length)
        psi = np.ascontiguousarray(psi)
        ia, ib = np.triu_indices(m)
        upper = np.zeros(ia.size, dtype=complex)
        starts = list(range(0, ia.size, chunk))
        rank, size = (0, 1) if comm is None else (comm.rank, comm.size)
        for lo in starts[rank::size]:
            a, b = ia[lo : lo + chunk], ib[lo : lo + chunk]
            spectra: dict = {}

            def spectrum(i, j):
                # FFT of the zero-padded pair density conj(phi^a_i) phi^b_j of the chunk's pairs
                if (i, j) not in spectra:
                    buf = np.empty((a.size, length), dtype=complex)
                    if kernels:
                        pair_densities_nb(psi, a, b, int(i), int(j), buf)
                    else:
                        buf[:, n_x:] = 0.0
                        buf[:, :n_x] = psi[a, i].conj() * psi[b, j]
                    spectra[i, j] = sfft.fft(buf, axis=-1, overwrite_x=True, workers=self.workers)
                return spectra[i, j]

            acc = upper[lo : lo + chunk]
            w2 = np.empty(a.size, dtype=complex)
            _, _, d2 = overlap_derivatives(ov[a, b], antisymmetric)
            for (j, kk), weights in d2.items():
                rows = ([(i, i2) for i in range(n) for i2 in range(n) if i != i2]
                        if antisymmetric else [(j, kk)])
                for i, i2 in rows:
                    f_hat, g_hat = spectrum(i, j), spectrum(i2, kk)
                    if kernels:
                        parseval_sums_nb(f_hat, g_hat, w_hat, w2)
                    else:
                        w2 = np.einsum("cq,q,cq->c", f_hat[:, rev], w_hat, g_hat)
                    acc += w2 * weights[:, i, i2]
        if size > 1:
            mine = {lo: upper[lo : lo + chunk].copy() for lo in starts[rank::size]}
            for part in comm.allgather(mine):
                for lo, vals in part.items():
                    upper[lo : lo + vals.size] = vals
        out = np.zeros((m, m), dtype=complex)
        out[ia, ib] = upper
        out[ib, ia] = upper.conj()
        out[np.arange(m), np.arange(m)] = upper[ia == ib].real
        return out


def reconstructed_ratios(values: np.ndarray, d1: np.ndarray, d2: np.ndarray, c: np.ndarray,
                         antisymmetric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Psi, d_k Psi / Psi and d_k^2 Psi / Psi of the reconstructed wavefunction at B configurations.

    Parameters
    ----------
    values, d1, d2 : ndarray, complex, shape (B, M, N, N)
        phi^b_l at X_k and its first and second derivatives: entry [w, b, k, l] for world w's
        electron k and basis function b's orbital l.
    c : ndarray, complex, shape (M,)
    antisymmetric : bool

    Returns
    -------
    psi : (B,), r1, r2 : (B, N) complex
    """
    n_w, m, n, _ = values.shape
    diag = np.arange(n)
    with np.errstate(invalid="ignore"):  # NaN rows: removed worlds
        return _reconstructed(values, d1, d2, c, antisymmetric, n_w, n, diag)


def _reconstructed(values, d1, d2, c, antisymmetric, n_w, n, diag):
    if not antisymmetric:
        v = values[:, :, diag, diag]  # (B, M, N)
        full = np.prod(v, axis=-1)  # (B, M)
        psi = full @ c
        r1 = np.empty((n_w, n), dtype=complex)
        r2 = np.empty((n_w, n), dtype=complex)
        for k in range(n):
            rest = np.prod(np.delete(v, k, axis=-1), axis=-1)
            r1[:, k] = (rest * d1[:, :, k, k]) @ c
            r2[:, k] = (rest * d2[:, :, k, k]) @ c
    else:
        psi = np.linalg.det(values) @ c
        r1 = np.empty((n_w, n), dtype=complex)
        r2 = np.empty((n_w, n), dtype=complex)
        for k in range(n):
            a = values.copy()
            a[:, :, k, :] = d1[:, :, k, :]
            r1[:, k] = np.linalg.det(a) @ c
            a[:, :, k, :] = d2[:, :, k, :]
            r2[:, k] = np.linalg.det(a) @ c
    with np.errstate(divide="ignore", invalid="ignore"):
        return psi, r1 / psi[:, None], r2 / psi[:, None]


# ---------------------------------------------------------------------------------------- ensemble
class InteractingEnsemble:
    """Measured worlds guided by the ICWF wavefunction of a shared basis (module Choices).

    Parameters
    ----------
    model : bohmpower.model.Model
    X0 : ndarray, shape (B, N)
        Initial positions of the measured worlds [bohr].
    n_basis : int
        Basis worlds (the control parameter).
    seed : int
        Run seed; the basis worlds use the streams ``BASIS_ID_OFFSET + beta``.
    overlap_cutoff : float
        Relative eigenvalue cutoff of the pseudo-inverse of S.
    norm_tolerance : float
        Largest relative drift of the norm of Psi allowed.
    energy_tolerance : float
        Largest relative drift of the energy <H> of Psi allowed, checked when it must be conserved
        (no absorbing layers, no drive); otherwise the energy is recorded only.
    sample_ids : ndarray of int, shape (B,), optional
    workers : int
        FFT threads.
    comm : MPI communicator, optional
        Every rank holds the whole basis and steps it alike (deterministic); the pair matrix, the
        dominant cost, is shared over the ranks (``PairInteraction.pair_matrix``). Every rank must then
        step its ensemble the same number of times (a rank without measured worlds passes B = 0).

    Attributes
    ----------
    state : TrajectoryState
    c : ndarray (M,)
        Coefficients of the live basis functions.
    norm : float
        Norm of the reconstructed Psi.
    rank_history, norm_history : list
        Kept eigenvalues of S and the norm of Psi at every step.
    timings : dict
        Seconds in ``basis`` (propagation), ``matrices``, ``guidance``.
    """

    def __init__(self, model, X0: np.ndarray, n_basis: int, seed: int, *,
                 overlap_cutoff: float = 1e-10, norm_tolerance: float = 0.05,
                 energy_tolerance: float = 0.05,
                 sample_ids: np.ndarray | None = None, workers: int = 1, comm=None) -> None:
        from bohmpower.cw.engine import CWEnsemble
        from bohmpower.model.sampling import sample_configurations

        if getattr(model, "orbitals", None) is None:
            raise ConfigError(
                "initial.many_body_state",
                "the interacting scheme starts from orbitals; give [[initial.packet]], "
                "[initial.train] or [[initial.eigenstate]]",
            )
        self.model = model
        self.n_particles = n = int(model.n_particles)
        self.antisymmetric = model.statistics == "fermion" and n > 1
        self.factorial = math.factorial(n) if self.antisymmetric else 1
        self.dt = float(model.config.time.dt)
        self.dx = float(model.grid.dx)
        self.x_min, self.x_max = float(model.grid.x_min), float(model.grid.x_max)
        self.overlap_cutoff = float(overlap_cutoff)
        self.norm_tolerance = float(norm_tolerance)
        self.comm = comm
        self.energy_tolerance = float(energy_tolerance)
        self.potentials = PointPotentials.from_model(model)
        X0 = np.array(X0, dtype=float)
        if X0.ndim != 2 or X0.shape[1] != n:
            raise ValueError(f"X0 must have shape (B, {n}), got {X0.shape}")
        self.n_worlds = X0.shape[0]
        self.sample_ids = (np.arange(self.n_worlds) if sample_ids is None
                           else np.asarray(sample_ids, dtype=int))
        kind = "slater" if self.antisymmetric else "product"
        basis_ids = BASIS_ID_OFFSET + np.arange(int(n_basis))
        Xb = sample_configurations(kind, model.orbitals, model.grid.x, int(seed), basis_ids)
        # Basis worlds: the zeroth-order engine, failures recorded (the basis function is dropped)
        # The zeroth-order resolution check (spectral edge weight of each CW) is measured on the
        # basis but does not remove basis worlds: one function's edge weight says little about Psi's,
        # and dropping basis functions changes Psi; a warning names the grid instead (step()).
        self.basis = CWEnsemble(model, Xb, exchange=False, workers=workers, sample_ids=basis_ids,
                                discard_failures=True, spectral_tolerance=np.inf)
        self._edge_warned = False
        inter = self.potentials.w
        self.pair = None if inter is None else PairInteraction(model.grid.x, inter, workers)
        self.timings = {"basis": 0.0, "matrices": 0.0, "guidance": 0.0}
        self.step_index = 0
        self.live = self.basis.state.alive.copy()
        mats = self._matrices()
        # C(0): least-squares fit S C = <Phi_a | Psi0> (Psi0 = det or product of the orbitals)
        orb = np.asarray(model.orbitals, dtype=complex)
        psi_b = self.basis.psi[self.live]
        o0 = np.einsum("aix,jx->aij", psi_b.conj(), orb) * self.dx  # <phi^a_i|orbital_j>
        beta = overlap_derivatives(o0, self.antisymmetric, order=0)[0]
        s_plus, self.rank, self.condition = pseudo_inverse(mats.s, self.overlap_cutoff)
        c = s_plus @ beta
        self.c = c / np.sqrt(self._norm(c, mats.s))
        self.norm = self._norm(self.c, mats.s)
        self.g = s_plus @ mats.k
        self.s = mats.s
        # <H> of Psi: conserved without absorbing layers and drives (checked then, recorded always)
        self.conserves_energy = not self.potentials.absorbing and len(model.drives) == 0
        self.energy = self._energy(mats)
        self.energy_history = [self.energy]
        self.rank_history = [self.rank]
        self.norm_history = [self.norm]
        self.condition_history = [self.condition]
        self.log_weight = np.zeros(self.n_worlds)
        self.crossed = np.zeros(self.n_worlds, dtype=bool)
        self._order0 = np.argsort(X0, axis=1)
        self.n_removed = 0
        self.previous = None
        self.state = self._build_state(X0, np.ones(self.n_worlds, dtype=bool), 0.0)

    # ------------------------------------------------------------------ internals
    @property
    def t(self) -> float:
        return self.state.t

    def _energy(self, mats: BasisMatrices) -> float:
        """<Psi|H|Psi> / <Psi|Psi> with the exact solver's convention: T + U0 + pair interaction, plus
        q phi when ``[energy] include_drive_potential`` (the Hermitian part; no absorber)."""
        psi = self.basis.psi[self.live]
        prop = self.basis.propagator
        kin = np.fft.ifft((prop.k**2 / (2 * self.potentials.mass)) * np.fft.fft(psi, axis=-1), axis=-1)
        v = prop.u0
        if getattr(self.model, "include_drive_potential", False):
            v = v + prop.drive_potential(self.t_now)
        h = one_body_matrix(psi, kin + v * psi, mats.cofactors, self.dx)
        if mats.pair is not None:
            h = h + mats.pair
        c = self.c
        return float(np.real(np.vdot(c, h @ c)) / np.real(np.vdot(c, mats.s @ c)))

    def _norm(self, c: np.ndarray, s: np.ndarray) -> float:
        return float(np.real(np.vdot(c, s @ c))) * self.factorial

    def _matrices(self) -> BasisMatrices:
        a = _time.perf_counter()
        psi = self.basis.psi[self.live]
        X = self.basis.state.X[self.live]
        mats = basis_matrices(psi, X, self.model.grid.x, self.pair, self.antisymmetric, self.comm)
        self.timings["matrices"] += _time.perf_counter() - a
        if not (np.all(np.isfinite(mats.s)) and np.all(np.isfinite(mats.k))):
            raise NumericalError(self.step_index, self.t_now,
                                 "interacting scheme: S or K not finite (a basis CW blew up)")
        return mats

    @property
    def t_now(self) -> float:
        return self.basis.state.t

    def _norm_remedy(self) -> str:
        """What to change when the norm of Psi runs away, by the measured effect of the cutoff
        (docs/interacting.md, section 3)."""
        c = self.overlap_cutoff
        if c < 1e-10:
            return ("the pseudo-inverse keeps near-singular directions of S; raise "
                    f"method.overlap_cutoff (now {c:g}) to 1e-10 (the default), which held the "
                    "norm where 1e-12 ran away and kept the pair correlation, or to 1e-8 "
                    "(docs/interacting.md, section 3), or lower time.dt")
        if c < 1e-8:
            return ("the pseudo-inverse keeps near-singular directions of S; raise "
                    f"method.overlap_cutoff (now {c:g}) to 1e-8, which holds the norm to 1e-3 at "
                    "some cost in the pair correlation P_C (docs/interacting.md, section 3), or "
                    "lower time.dt")
        return (f"raise method.basis_size, lower time.dt or change method.overlap_cutoff "
                f"(now {c:g})")

    def _fail(self, cause: str) -> None:
        raise NumericalError(self.step_index, self.t_now, f"interacting scheme: {cause}")

    def _ratios(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Psi, r1, r2 of the reconstructed wavefunction at configurations X (B', N) (numba)."""
        from ._icwf_kernels import icwf_ratios_nb

        psi_b = np.ascontiguousarray(self.basis.psi[self.live])
        X = np.ascontiguousarray(X, dtype=float)
        n_w, n = X.shape
        out = np.empty(n_w, dtype=complex)
        r1 = np.empty((n_w, n), dtype=complex)
        r2 = np.empty((n_w, n), dtype=complex)
        prop = self.basis.propagator
        with np.errstate(divide="ignore", invalid="ignore"):
            icwf_ratios_nb(psi_b, np.ascontiguousarray(self.c), X, float(prop.x[0]), float(prop.dx),
                           int(prop.n_stencil), bool(self.antisymmetric), out, r1, r2)
        return out, r1, r2

    def _ratios_numpy(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Numpy twin of :meth:`_ratios` (propagator stencils, then :func:`reconstructed_ratios`)."""
        psi_b = np.ascontiguousarray(self.basis.psi[self.live])
        m, n = psi_b.shape[:2]
        pts = np.ascontiguousarray(np.broadcast_to(X.reshape(1, 1, -1), (m, 1, X.size)))
        vals, d1, d2 = self.basis.propagator.derivatives(psi_b, pts)  # (M, N, B'*N)
        # -> [w, b, k, l]
        shape = (m, n, X.shape[0], n)
        vals, d1, d2 = (a.reshape(shape).transpose(2, 0, 3, 1) for a in (vals, d1, d2))
        return reconstructed_ratios(vals, d1, d2, self.c, self.antisymmetric)

    def _velocity(self, X: np.ndarray, alive: np.ndarray) -> np.ndarray:
        v = np.full(X.shape, np.nan)
        idx = np.flatnonzero(alive)
        if idx.size:
            _, r1, _ = self._ratios(X[idx])
            v[idx] = np.imag(r1) / self.potentials.mass
        return v

    def _quantum_potential(self, X: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """Q_k of the reconstructed Psi at X (NaN where not alive)."""
        q = np.full(X.shape, np.nan)
        idx = np.flatnonzero(alive)
        if idx.size:
            _, r1, r2 = self._ratios(X[idx])
            q[idx] = velocity_and_quantum_potential(r1, r2, self.potentials.mass)[1]
        return q

    def _build_state(self, X: np.ndarray, alive: np.ndarray, t: float,
                     quantum_source: np.ndarray | None = None) -> TrajectoryState:
        n_w, n = X.shape
        vals = {k: np.full((n_w, n), np.nan) for k in _STATE_KEYS}
        gamma_total = np.zeros(n_w)
        idx = np.flatnonzero(alive)
        if idx.size:
            a = _time.perf_counter()
            _, r1, r2 = self._ratios(X[idx])
            v, q = velocity_and_quantum_potential(r1, r2, self.potentials.mass)
            ev = self.potentials.evaluate(X[idx], v, q, t)
            vals["v"][idx], vals["Q"][idx] = v, q
            for key in _STATE_KEYS:
                if key not in ("v", "Q"):
                    vals[key][idx] = ev[key]
            gamma_total[idx] = ev["gamma_total"]
            bad = ~np.all(np.isfinite(v) & np.isfinite(q) & np.isfinite(vals["e"][idx]), axis=1)
            self.timings["guidance"] += _time.perf_counter() - a
            if np.any(bad):
                row = int(np.flatnonzero(bad)[0])
                raise NumericalError(
                    self.step_index, t,
                    f"sample {int(self.sample_ids[idx[row]])}: velocity, quantum potential or "
                    "energy not finite (the trajectory sits on a node of the reconstructed Psi)")
        for key in _STATE_KEYS:
            vals[key][~alive] = np.nan
        self.log_weight = np.where(alive, self.log_weight, -np.inf)
        weight = np.where(alive, np.exp(self.log_weight), 0.0)
        Xs = np.where(alive[:, None], X, np.nan)
        if quantum_source is not None:
            quantum_source = np.where(alive[:, None], quantum_source, np.nan)
        return TrajectoryState(t=t, X=Xs, gamma_total=gamma_total, weight=weight,
                               quantum_source=quantum_source, **vals)

    def _refit(self, old_live: np.ndarray, s_full_old: np.ndarray) -> None:
        """Least-squares refit of C on the live basis after basis worlds were removed."""
        keep = self.live[old_live]  # positions (within the old live set) that stay
        # <Phi_a | Psi> for the kept a, with Psi = sum_b C_b Phi_b over the old set (same time)
        rhs = s_full_old[keep] @ self.c
        s_new = s_full_old[np.ix_(keep, keep)]
        s_plus, _, _ = pseudo_inverse(s_new, self.overlap_cutoff)
        self.c = s_plus @ rhs

    # ------------------------------------------------------------------ public
    def step(self) -> TrajectoryState:
        """Advance basis, coefficients and measured worlds by dt (module Choices)."""
        from bohmpower.cw.engine import absorb_and_keep, mark_crossings

        dt = self.dt
        old = self.state
        alive = old.alive
        self.step_index += 1
        g_old = self.g
        # d_t Q at fixed configuration (P_S): Q at the step's predicted midpoint configuration,
        # before and after Psi is advanced (second order in dt)
        a = _time.perf_counter()
        X_half = np.where(alive[:, None], old.X + 0.5 * dt * old.v, np.nan)
        half_ok = alive & np.all(np.isfinite(X_half), axis=1)
        q_before = self._quantum_potential(X_half, half_ok)
        self.timings["guidance"] += _time.perf_counter() - a
        a = _time.perf_counter()
        old_live = self.live.copy()
        s_old = self.s
        self.basis.step()
        self.timings["basis"] += _time.perf_counter() - a
        now_live = self.basis.state.alive
        if not np.any(now_live):
            self._fail("every basis world was removed (absorbed, left the cell or failed)")
        if np.any(old_live & ~now_live):
            # drop the removed basis functions and refit C at the old time, then go on
            self.live = now_live.copy()
            self._refit(old_live, s_old)
            g_old = None
        mats = self._matrices()
        try:
            s_plus, self.rank, self.condition = pseudo_inverse(mats.s, self.overlap_cutoff)
        except FloatingPointError as exc:
            self._fail(str(exc))
        g_new = s_plus @ mats.k
        if g_old is None:
            # after a refit the old G belongs to another basis: one-sided (first-order) step
            g_mid = g_new
        else:
            g_mid = 0.5 * (g_old + g_new)
        self.c = scipy.linalg.expm(-1j * dt * g_mid) @ self.c
        self.g, self.s = g_new, mats.s
        if not np.all(np.isfinite(self.c)):
            self._fail("coefficients C not finite")
        self.norm = self._norm(self.c, mats.s)
        self.energy = self._energy(mats)
        self.energy_history.append(self.energy)
        self.rank_history.append(self.rank)
        self.norm_history.append(self.norm)
        self.condition_history.append(self.condition)
        drift = self.norm / self.norm_history[0] - 1.0
        absorbing = self.potentials.absorbing
        if (not absorbing and abs(drift) > self.norm_tolerance) or (absorbing and drift > self.norm_tolerance):
            self._fail(
                f"the norm of the reconstructed Psi drifted by {drift:+.3g} (tolerance "
                f"{self.norm_tolerance:g}; S rank {self.rank}, condition {self.condition:.2g}): "
                + self._norm_remedy())
        edge = self.basis.max_spectral_edge
        if edge > SPECTRAL_EDGE_TOLERANCE and not self._edge_warned:
            self._edge_warned = True
            units = getattr(self.model, "units", None)
            when = units.quantity(self.t_now, "time") if units is not None else f"{self.t_now:.6g}"
            log.warning("interacting scheme, t = %s: the basis CWs carry on average %.1e of their "
                        "probability in the top 10%% of the grid's wavenumbers (zeroth-order runs "
                        "stop above %.0e): the grid may not resolve the collision; increase "
                        "grid.points", when, edge, SPECTRAL_EDGE_TOLERANCE)
        if self.conserves_energy:
            e0 = self.energy_history[0]
            e_drift = (self.energy - e0) / max(abs(e0), 1e-12)
            if not abs(e_drift) <= self.energy_tolerance:
                self._fail(
                    f"the energy of the reconstructed Psi drifted by {e_drift:+.3g} (relative; "
                    f"tolerance {self.energy_tolerance:g}) although nothing drives or absorbs it; raise "
                    f"method.basis_size or lower time.dt (S rank {self.rank})")
        # measured worlds: the same predictor-corrector as the zeroth-order engine, with Psi_r
        t_new = old.t + dt
        X_new = np.full_like(old.X, np.nan)
        a = _time.perf_counter()
        with np.errstate(invalid="ignore"):
            source = (self._quantum_potential(X_half, half_ok) - q_before) / dt
        self.timings["guidance"] += _time.perf_counter() - a
        if np.any(alive):
            a = _time.perf_counter()
            X_star = np.where(alive[:, None], old.X + dt * old.v, np.nan)
            ok = alive & np.all(np.isfinite(X_star), axis=1)
            v_star = self._velocity(X_star, ok)
            X_new = np.where(alive[:, None], old.X + 0.5 * dt * (old.v + v_star), np.nan)
            self.timings["guidance"] += _time.perf_counter() - a
        self.log_weight, keep = absorb_and_keep(self.potentials, self.log_weight, old, X_new, dt,
                                                self.x_min, self.x_max)
        self.n_removed += int(np.sum(alive & ~keep))
        self.previous = old
        self.state = self._build_state(X_new, keep, t_new, source)
        mark_crossings(self.crossed, self.state, self._order0)
        return self.state

    def wavefunction_on_grid(self) -> np.ndarray:
        """The reconstructed Psi on the full N-electron grid, shape (n_x,)*N (tests; N <= 3).

        Normalised like the exact solver's Psi (sum |Psi|^2 dx^N = norm, 1 at t = 0).
        """
        psi_b = self.basis.psi[self.live]
        m, n, n_x = psi_b.shape
        if n > 3:
            raise ValueError("the full grid is for N <= 3")
        out = np.zeros((n_x,) * n, dtype=complex)
        perms, signs = permutations_with_signs(n, self.antisymmetric)
        axes = "ijk"[:n]
        outer = ",".join("b" + ax for ax in axes) + "->b" + axes  # "bi,bj->bij"
        for p, sg in zip(perms, signs):
            # sum_sigma sgn prod_l phi_l(x_{sigma(l)}): orbital l sits on axis sigma(l)
            factors = [psi_b[:, list(p).index(ax), :] for ax in range(n)]
            out += sg * np.einsum("b,b" + axes + "->" + axes, self.c, np.einsum(outer, *factors))
        return out
