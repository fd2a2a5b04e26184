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


def test_exact_estimate_with_trajectories_is_within_1_5x_of_a_measured_run():
    """With [trajectories] the run steps one step at a time and moves the Bohmian ensemble at every
    step; the estimate times that too (on a throwaway ensemble of the run's size), so it must again
    be within a factor 1.5 of ``ExactSolver.run()`` measured right after. Here the ensemble's share
    is most of the run, so an estimate that left it out would be off by more than 1.5x."""
    cfg = _driven_case(2, 64, dt=0.02, t_end=0.8, save_every=20).replace_section(
        "trajectories", count=512, seed=3, store=4)
    exact_run_cost(cfg)  # numba kernels loaded into this process (see the test above)
    cost = exact_run_cost(cfg)
    assert cost["samples"] == 512 and cost["trajectory_step"] > cost["step"]
    without = exact_run_cost(_driven_case(2, 64, dt=0.02, t_end=0.8, save_every=20))
    assert cost["seconds"] > 1.5 * without["seconds"]  # the trajectories are what the run costs
    solver = ExactSolver(cfg)
    t0 = time.perf_counter()
    solver.run()
    measured = time.perf_counter() - t0
    assert measured / 1.5 < cost["seconds"] < 1.5 * measured, (cost, measured)
    text = describe_estimates(cfg)
    assert "with 512 exact Bohmian trajectories" in text and "trajectories" in text
