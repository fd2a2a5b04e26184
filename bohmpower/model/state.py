"""The record every trajectory source produces at every step, and every estimator consumes.

Exact Bohmian worlds (``exact.trajectories``) and conditional-wavefunction worlds (``cw.engine``)
both fill a :class:`TrajectoryState`; ``power.recorder`` feeds it to the estimators. It lives in the
model layer because both sources sit below the estimators and neither may import the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TrajectoryState:
    """Everything the estimators need from one step of an ensemble of W worlds of N electrons.

    Removed worlds carry NaN in every (W, N) array, weight 0 and gamma_total 0.

    Attributes
    ----------
    t : float
        Time [a.u. time].
    X : ndarray, shape (W, N)
        Positions [bohr].
    v : ndarray, shape (W, N)
        Velocities v_k [bohr / a.u. time].
    e : ndarray, shape (W, N)
        Per-electron energies e_k [hartree] (q phi included when chi = 1).
    Q : ndarray, shape (W, N)
        Quantum potentials Q_k [hartree].
    field_force : ndarray, shape (W, N)
        q E(X_k, t) [hartree / bohr].
    field_power : ndarray, shape (W, N)
        f_k = q E(X_k, t) v_k (chi = 0), q d_t phi(X_k, t) (chi = 1) [hartree / a.u. time].
    pair_force : ndarray, shape (W, N)
        sum_{j != k} F_kj, F_kj = -W'(X_k - X_j) [hartree / bohr].
    pair_power : ndarray, shape (W, N)
        c_k = (1/2) sum_{j != k} F_kj (v_k + v_j) [hartree / a.u. time].
    du0 : ndarray, shape (W, N)
        U0'(X_k) [hartree / bohr].
    gamma_total : ndarray, shape (W,)
        Gamma_tot = sum_k Gamma(X_k) [hartree].
    weight : ndarray, shape (W,)
        w_i(t) (0: removed).
    quantum_force_grid : ndarray, shape (W, N), or None
        -d_k Q interpolated from the grid [hartree / bohr] (guides built with ``quantum_force=True``).
    quantum_source : ndarray, shape (W, N), or None
        d_t Q_k at fixed configuration over the step that ends at this state, at the step's midpoint
        [hartree / a.u. time] (engines with an explicit Psi: the P_S / P_N split); None otherwise.
    """

    t: float
    X: np.ndarray
    v: np.ndarray
    e: np.ndarray
    Q: np.ndarray
    field_force: np.ndarray
    field_power: np.ndarray
    pair_force: np.ndarray
    pair_power: np.ndarray
    du0: np.ndarray
    gamma_total: np.ndarray
    weight: np.ndarray
    quantum_force_grid: np.ndarray | None = None
    quantum_source: np.ndarray | None = None

    @property
    def alive(self) -> np.ndarray:
        """Worlds not removed, shape (W,), bool."""
        return self.weight > 0
