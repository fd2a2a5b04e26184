"""Run-time estimates of ``bohmpower check`` against a measured run (estimates.exact_run_cost)."""

from __future__ import annotations

import time
from pathlib import Path

from bohmpower.driver import ExactSolver
from bohmpower.estimates import describe_estimates, exact_run_cost
from tests.test_exact_physics import _driven_case


def test_exact_estimate_is_within_1_5x_of_a_measured_run():
    """The estimate is built from this run's own kernels timed here (steps, observables at a node and
    at a frame, times their counts), so it must match the run it describes: within a factor 1.5 of
    the time of ``ExactSolver.run()`` measured right after, on the same machine. CPU times (one
    thread): wall times moved the ratio out of 1/1.5..1.5 at load 5-7 with the same estimate."""
    cfg = _driven_case(2, 128, dt=0.02, t_end=1.6, save_every=20)
    # Once to load the numba kernels into this process: the estimate counts the first calls' extra
    # time, which `bohmpower exact` pays in its own process but the run below, after it, would not.
    exact_run_cost(cfg)
    cost = exact_run_cost(cfg, clock=time.process_time)
    assert cost["n_steps"] == 80 and cost["n_frames"] == 5
    assert cost["n_nodes"] > 0 and cost["step"] < cost["node"] < cost["frame"]
    solver = ExactSolver(cfg)
    t0 = time.process_time()
    solver.run()
    measured = time.process_time() - t0
    assert measured / 1.5 < cost["seconds"] < 1.5 * measured, (cost, measured)


def test_check_prints_the_calibrated_exact_estimate():
    text = describe_estimates(_driven_case(2, 128, dt=0.02, t_end=0.4, save_every=10))
    assert "timed here: step" in text and "window-quadrature nodes" in text


def test_exact_estimate_with_trajectories_is_within_1_5x_of_a_measured_run():
    """With [trajectories] the run steps one step at a time and moves the Bohmian ensemble at every
    step; the estimate times that too (on a throwaway ensemble of the run's size), so it must again
    be within a factor 1.5 of ``ExactSolver.run()`` measured right after. Here the ensemble's share
    is most of the run, so an estimate that left it out would be off by more than 1.5x. CPU times,
    as in the test of the conditional-wavefunction estimate below."""
    cfg = _driven_case(2, 64, dt=0.02, t_end=0.8, save_every=20).replace_section(
        "trajectories", count=512, seed=3, store=4)
    exact_run_cost(cfg)  # numba kernels loaded into this process (see the test above)
    cost = exact_run_cost(cfg, clock=time.process_time)
    assert cost["samples"] == 512 and cost["trajectory_step"] > cost["step"]
    without = exact_run_cost(_driven_case(2, 64, dt=0.02, t_end=0.8, save_every=20),
                             clock=time.process_time)
    assert cost["seconds"] > 1.5 * without["seconds"]  # the trajectories are what the run costs
    solver = ExactSolver(cfg)
    t0 = time.process_time()
    solver.run()
    measured = time.process_time() - t0
    assert measured / 1.5 < cost["seconds"] < 1.5 * measured, (cost, measured)
    text = describe_estimates(cfg)
    assert "with 512 exact Bohmian trajectories" in text and "trajectories" in text


def test_cw_estimate_is_within_1_5x_of_a_measured_run():
    """`bohmpower check` on a `run` file times the run's own engine (one block's steps with its
    estimators), so it must be within a factor 1.5 of ``CWSolver.run()`` measured right after: the
    built-in run demo, shrunk to 2 blocks of 64 worlds and 40 steps. Both are CPU times (one thread):
    the cost model (steps x blocks x the timed step, plus the per-block and one-off parts) is what is
    tested, not the load of a shared machine between the two, which moved wall-time ratios between
    0.7 and 1.7 at load 5 with the same model."""
    from bohmpower.config import load_config
    from bohmpower.driver import CWSolver
    from bohmpower.estimates import cw_run_cost

    demo = Path(__file__).resolve().parents[1] / "bohmpower" / "demo" / "run_demo.toml"
    cfg = load_config(demo).with_overrides(samples=128)
    cfg = cfg.replace_section("time", t_end=2.0, save_every=10)
    cw_run_cost(cfg)  # numba kernels loaded into this process first (as for the exact estimate)
    cost = cw_run_cost(cfg, clock=time.process_time)
    assert cost["samples"] == 128 and cost["width"] == 64 and cost["n_steps"] == 40
    solver = CWSolver(cfg)
    t0 = time.process_time()
    solver.run()
    measured = time.process_time() - t0
    assert measured / 1.5 < cost["seconds"] < 1.5 * measured, (cost, measured)


def test_run_logs_its_estimate_and_the_measured_ratio(tmp_path, caplog):
    """`bohmpower run` logs the estimate `check` prints before it starts and measured / estimate at
    its end (the interacting scheme's own cost model, ``estimates.interacting_run_cost``)."""
    import logging
    import re

    from bohmpower.cli import main
    from tests.conftest import run_dict, write_run_file
    from tests.test_api import TINY

    run = write_run_file(tmp_path / "run.toml", run_dict(**dict(
        TINY, method={"scheme": "interacting", "exchange": True, "basis_size": 8})))
    with caplog.at_level(logging.INFO):
        assert main(["run", str(run), "-o", str(tmp_path / "r.h5")]) == 0
    text = caplog.text
    est = re.search(r"estimated run time .*: ([0-9.e+-]+) s", text)
    num = r"([0-9.]+(?:e[+-]?[0-9]+)?)"
    ratio = re.search(rf"measured {num} s against the estimate {num} s: measured / estimate = {num}",
                      text)
    assert est and ratio, text[-2000:]
    measured, estimate, r = (float(g) for g in ratio.groups())
    assert estimate == float(est.group(1)) and estimate > 0
    assert abs(r / (measured / estimate) - 1) < 0.01


def test_the_commands_fixed_cost_is_kept_per_machine_as_the_median_of_the_last_runs(
        tmp_path, monkeypatch):
    """`check` adds to the kernels' estimate the command's fixed cost (imports, set-up, in-run
    estimate, result file), the median of what the last runs of that command recorded; before any
    run it times the imports in a child process (and keeps that too)."""
    from bohmpower import estimates

    monkeypatch.setenv("BOHMPOWER_CACHE_DIR", str(tmp_path))
    seconds, source = estimates.command_overhead("exact")
    assert 0.05 < seconds < 60 and "child process" in source
    assert estimates.command_overhead("exact")[0] == seconds  # kept, not timed again
    for v in [3.0, 1.0, 2.0, float("nan"), -1.0]:  # NaN and negative values are not records
        estimates.record_command_overhead("exact", v)
    assert estimates.command_overhead("exact") == (2.0, "median of this machine's last 3 run(s)")
    for v in range(20):
        estimates.record_command_overhead("exact", 100.0 + v)
    value, source = estimates.command_overhead("exact")
    assert value == 100.0 + 15 and "last 9 run(s)" in source  # the last 9: 111 .. 119
    assert estimates.command_overhead("run")[1].startswith("the imports")  # per command
    # by size class: a 512^2 run's plans do not price a 1D run's start-up
    for v in (0.8, 1.0, 1.2):
        estimates.record_command_overhead("exact", v, points=1280)
    estimates.record_command_overhead("exact", 5.0, points=512**2)
    small, source = estimates.command_overhead("exact", points=1000)
    assert small == 1.0 and "of this size" in source
    assert estimates.command_overhead("exact", points=600**2)[0] == 5.0
    # no record of that size: the last 9 of any size (115 .. 119 and the four above)
    assert estimates.command_overhead("exact", points=4096**2)[0] == 115.0
    (tmp_path / "command_overhead.json").write_text("{not json")
    assert estimates.command_overhead("exact")[0] > 0  # a damaged file is no failure
    up = estimates.process_elapsed()
    assert up is None or 0 < up < 1e6


def test_check_predicts_the_whole_command_with_its_fixed_cost(tmp_path):
    """The whole `bohmpower exact` process, as a user times it, against the estimate `check` prints
    for it: a short run (most of it imports, set-up and the result file, as in example 03), run once
    to record the machine's fixed cost, then estimated and run again. CPU time of the child
    processes (one thread each): the load of a shared machine moves wall times, not the model."""
    import json
    import os
    import re
    import resource
    import subprocess
    import sys

    from tests.conftest import run_dict, write_run_file

    run = write_run_file(tmp_path / "run.toml", run_dict(
        particles={"count": 2, "mass": 1.0, "statistics": "fermion"},
        grid={"x_min": -20.0, "x_max": 20.0, "points": 96, "boundary": "periodic"},
        time={"dt": 0.02, "t_end": 2.0, "save_every": 20},
        initial={"packet": [{"center": -3.0, "width": 1.0, "wavenumber": 0.6},
                            {"center": 3.0, "width": 1.0, "wavenumber": -0.3}]},
        interaction={"kind": "soft_coulomb", "softening": 1.0},
        volume=[{"name": "left", "x_min": -10.0, "x_max": 0.0}]))
    env = dict(os.environ, BOHMPOWER_CACHE_DIR=str(tmp_path / "cache"))

    def child(*args) -> tuple[float, str]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run([sys.executable, "-m", "bohmpower", *args], env=env,
                             capture_output=True, text=True, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                out.stdout + out.stderr)

    child("exact", str(run), "-o", str(tmp_path / "a.h5"))
    records = json.loads((tmp_path / "cache" / "command_overhead.json").read_text())
    assert len(records["exact"]) == 1 and records["exact"][0] > 0.2  # at least the imports
    text = child("check", str(run))[1]
    m = re.search(r"run time: about ([0-9.]+) s .*fixed cost ([0-9.]+) s .*median of this "
                  r"machine's last 1 run", text)
    assert m, text
    estimate = float(m.group(1))
    measured = child("exact", str(run), "-o", str(tmp_path / "b.h5"))[0]
    assert measured / 1.5 < estimate < 1.5 * measured, (estimate, measured, text)


def test_exact_estimate_of_a_run_with_frames_only_times_a_few_steps():
    """Without volumes a run evaluates its frames only (no window nodes) and advances in one long
    call between them; the estimate times short calls (per call and per step by difference), not
    the run's own length (it once propagated the whole run four times over), and still matches the
    run within 1.5x (CPU times, as above)."""
    import dataclasses

    cfg = _driven_case(2, 128, dt=0.02, t_end=4.0, save_every=200)
    cfg = dataclasses.replace(cfg, volume=()).validated()
    solver = ExactSolver(cfg)
    assert not solver.windows().node_steps and not solver.windows().edge_steps
    exact_run_cost(cfg)  # numba kernels loaded into this process (see the first test)
    timed = []
    advance = solver.propagator.advance

    def counting(psi, t, n_steps):
        timed.append(n_steps)
        return advance(psi, t, n_steps)

    solver.propagator.advance = counting
    cost = exact_run_cost(cfg, solver=solver, clock=time.process_time)
    assert cost["n_nodes"] == 0 and cost["n_frames"] == 2 and cost["n_steps"] == 200
    assert sum(timed) <= 40, timed  # a few short calls, whatever the run's length
    solver.propagator.advance = advance
    t0 = time.process_time()
    res = solver.run()
    measured = time.process_time() - t0
    assert res.timings["nodes"] == 0 and res.windows == {}
    assert measured / 1.5 < cost["seconds"] < 1.5 * measured, (cost, measured)
