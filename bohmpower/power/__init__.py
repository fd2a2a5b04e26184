"""Ensemble estimators of eps, E_Omega, P_Omega and its terms from trajectories (THEORY.md 2, 3, 6)."""

from bohmpower.power.estimators import BlockSums, EnsembleEstimator, silverman_bandwidth

__all__ = ["BlockSums", "EnsembleEstimator", "silverman_bandwidth"]
