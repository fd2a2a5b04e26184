"""Conditional-wavefunction (CW) Monte Carlo for many electrons (THEORY.md section 4.2).

Modules: ``propagator`` (batched one-particle CW propagation and point derivatives), ``guidance`` and
``engine`` (trajectories, exchange, estimators). Never imports ``bohmpower.exact``.
"""
