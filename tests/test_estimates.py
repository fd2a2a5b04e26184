"""Run-time estimates of ``bohmpower check`` against a measured run (estimates.exact_run_cost)."""

from __future__ import annotations

import time

from bohmpower.driver import ExactSolver
from bohmpower.estimates import describe_estimates, exact_run_cost
from tests.test_exact_physics import _driven_case


def test_exact_estimate_is_within_1_5x_of_a_measured_run():
    """The estimate is built from this run's own kernels timed here (steps, observables at a node and
    at a frame, times their counts), so it must match the run it describes: within a factor 1.5 of
    the wall time of ``ExactSolver.run()`` measured right after, on the same machine and load."""
    cfg = _driven_case(2, 128, dt=0.02, t_end=1.6, save_every=20)
    # Once to load the numba kernels into this process: the estimate counts the first calls' extra
    # time, which `bohmpower exact` pays in its own process but the run below, after it, would not.
    exact_run_cost(cfg)
    cost = exact_run_cost(cfg)
    assert cost["n_steps"] == 80 and cost["n_frames"] == 5
    assert cost["n_nodes"] > 0 and cost["step"] < cost["node"] < cost["frame"]
    solver = ExactSolver(cfg)
    t0 = time.perf_counter()
    solver.run()
    measured = time.perf_counter() - t0
    assert measured / 1.5 < cost["seconds"] < 1.5 * measured, (cost, measured)


def test_check_prints_the_calibrated_exact_estimate():
    text = describe_estimates(_driven_case(2, 128, dt=0.02, t_end=0.4, save_every=10))
    assert "timed here: step" in text and "window-quadrature nodes" in text
