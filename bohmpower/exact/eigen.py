"""Eigenstates of the full interacting N-electron Hamiltonian on the product grid (Lanczos).

Notes
-----
H is applied matrix-free: the kinetic energy by FFT (diagonal in the plane-wave basis), the static
potential ``sum_k U0(x_k) + sum_{j<k} W(x_j - x_k)`` pointwise. H is real symmetric on the grid (no
magnetic field, spectral kinetic operator with a real diagonal), so the eigenvectors are taken real
and ARPACK's symmetric Lanczos (scipy.sparse.linalg.eigsh, ``which="SA"``) finds the lowest ones.

Identical fermions: H commutes with every permutation of the electrons, so with the antisymmetriser
``P = (1/N!) sum_sigma sign(sigma) sigma`` (an orthogonal projector) the operator

.. math::

    A = P H P + c (1 - P) = H P + c (1 - P), \\qquad c > \\max \\mathrm{spec}(H),

has the antisymmetric eigenvalues of H and the value c (on the rest of the space). Its lowest
eigenpairs are therefore exactly the antisymmetric ones, and round-off that leaks a symmetric component
into the Krylov space cannot produce a spurious (lower, symmetric) eigenvalue. ``c`` is the bound
``max(T) + max(V) + 1`` (Weyl: the largest eigenvalue of T + V is at most the sum of the largest ones).
Distinguishable electrons: all states of H, no projection.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import numpy as np
import scipy.fft as sfft
from scipy.sparse.linalg import LinearOperator, eigsh

from bohmpower.errors import ConfigError

from .hamiltonian import one_body_sum, pair_sum

__all__ = ["antisymmetrize", "eigenstate_from_model", "many_body_eigenstate"]

logger = logging.getLogger(__name__)

STATISTICS = ("fermion", "distinguishable")


def _permutation_sign(perm: tuple[int, ...]) -> int:
    inversions = sum(
        1 for i in range(len(perm)) for j in range(i + 1, len(perm)) if perm[i] > perm[j]
    )
    return -1 if inversions % 2 else 1


def antisymmetrize(psi: np.ndarray) -> np.ndarray:
    """Antisymmetric projection :math:`P\\psi = \\frac{1}{N!}\\sum_\\sigma \\mathrm{sgn}(\\sigma)\\,\\sigma\\psi`.

    Parameters
    ----------
    psi : ndarray, shape (n_x,)*N
        Any many-body array (axis k = electron k).

    Returns
    -------
    ndarray, shape of ``psi``
        A new array, antisymmetric under exchange of any two axes.
    """
    n = psi.ndim
    out = np.zeros_like(psi)
    perms = list(itertools.permutations(range(n)))
    for perm in perms:
        if _permutation_sign(perm) > 0:
            out += np.transpose(psi, perm)
        else:
            out -= np.transpose(psi, perm)
    out /= len(perms)
    return out


def many_body_eigenstate(
    x: np.ndarray,
    kx: np.ndarray,
    mass: float,
    n_particles: int,
    u0: np.ndarray,
    w: Callable[[np.ndarray], np.ndarray] | None,
    statistics: str,
    n: int,
    tol: float = 1e-10,
) -> tuple[float, np.ndarray]:
    """The n-th eigenstate of the interacting N-electron Hamiltonian (n = 0: the lowest).

    Parameters
    ----------
    x : ndarray, shape (n_x,)
        Uniform periodic grid [bohr].
    kx : ndarray, shape (n_x,)
        FFT angular wavenumbers of the grid [1/bohr], numpy ``fftfreq`` order.
    mass : float
        Electron mass [m_e].
    n_particles : int
        Number of electrons N.
    u0 : ndarray, shape (n_x,)
        Static potential [hartree].
    w : callable or None
        Pair interaction W(r) [hartree]; None for none.
    statistics : {"fermion", "distinguishable"}
        Fermions: states of the antisymmetric sector only; distinguishable: all states.
    n : int
        Index of the state within that set, counted from the lowest (degenerate levels are counted
        with their multiplicity).
    tol : float
        Relative accuracy asked of ARPACK for the eigenvalues.

    Returns
    -------
    energy : float
        Eigenvalue [hartree].
    psi : ndarray, complex128, shape (n_x,)*N
        Eigenvector with ``sum |psi|^2 dx**N = 1``, real-valued (zero imaginary part) with its
        largest-magnitude component positive.

    Notes
    -----
    See the module docstring for the operator used in the fermion sector. The grid error of the
    eigenvalue is spectral in dx for smooth potentials and exponentially small in the box size for
    bound states; the caller chooses the grid.
    """
    if statistics not in STATISTICS:
        raise ConfigError(
            "particles.statistics", f"must be one of {STATISTICS}, got {statistics!r}"
        )
    n = int(n)
    if n < 0:
        raise ConfigError("initial.many_body_state", f"must be >= 0, got {n}")
    x = np.asarray(x, dtype=float)
    kx = np.asarray(kx, dtype=float)
    n_x = x.shape[0]
    dx = (x[-1] - x[0]) / (n_x - 1)
    shape = (n_x,) * int(n_particles)
    size = n_x ** int(n_particles)
    fermion = statistics == "fermion" and n_particles > 1

    kinetic = one_body_sum(kx**2 / (2.0 * mass), n_particles)
    potential = one_body_sum(np.asarray(u0, dtype=float), n_particles) + pair_sum(w, x, n_particles)
    c_shift = float(kinetic.max() + potential.max() + 1.0)

    def apply_h(v: np.ndarray) -> np.ndarray:
        psi = v.reshape(shape)
        hpsi = sfft.ifftn(kinetic * sfft.fftn(psi)).real
        hpsi += potential * psi
        return hpsi.ravel()

    if fermion:

        def matvec(v: np.ndarray) -> np.ndarray:
            v = np.asarray(v, dtype=float).ravel()
            pv = antisymmetrize(v.reshape(shape)).ravel()
            return apply_h(pv) + c_shift * (v - pv)

    else:

        def matvec(v: np.ndarray) -> np.ndarray:
            return apply_h(np.asarray(v, dtype=float).ravel())

    op = LinearOperator((size, size), matvec=matvec, dtype=np.float64)
    rng = np.random.default_rng(20161125)
    v0 = rng.standard_normal(shape)
    if fermion:
        v0 = antisymmetrize(v0)
    k = n + 1
    if k >= size - 1:
        raise ConfigError(
            "initial.many_body_state", f"index {n} too large for a grid of {size} points"
        )
    vals, vecs = eigsh(op, k=k, which="SA", tol=tol, v0=v0.ravel())
    order = np.argsort(vals)
    energy = float(vals[order[n]])
    if fermion and energy >= c_shift - 1e-9 * abs(c_shift):
        raise ConfigError(
            "initial.many_body_state",
            f"the antisymmetric sector of this grid has fewer than {k} states",
        )
    psi = vecs[:, order[n]].reshape(shape)
    if fermion:
        psi = antisymmetrize(psi)
    psi = psi / np.sqrt(np.sum(psi**2) * dx**n_particles)
    # Fixed global phase: eigsh returns real vectors, so only the sign is free.
    if psi.flat[np.argmax(np.abs(psi))] < 0:
        psi = -psi
    # (its energy is logged by the caller, in the run file's units)
    logger.debug("eigenstate n=%d (%s, N=%d) found", n, statistics, n_particles)
    return energy, psi.astype(np.complex128)


def eigenstate_from_model(model, n: int, tol: float = 1e-10) -> tuple[float, np.ndarray]:
    """:func:`many_body_eigenstate` for a :class:`bohmpower.model.Model` (duck-typed).

    Uses ``model.grid.x``, ``model.grid.k``, ``mass``, ``n_particles``, ``u0``, ``statistics`` and
    ``interaction.w`` (none when ``interaction`` is None or of kind ``"none"``).
    """
    inter = getattr(model, "interaction", None)
    w = None
    if inter is not None and getattr(inter, "kind", "none") != "none":
        w = inter.w
    return many_body_eigenstate(
        model.grid.x,
        model.grid.k,
        model.mass,
        model.n_particles,
        model.u0,
        w,
        model.statistics,
        n,
        tol=tol,
    )
