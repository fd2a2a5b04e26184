"""Window averages of the exact solver from a quadrature on a few step times (exact.quadrature)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bohmpower.driver import ExactSolver
from bohmpower.exact.quadrature import node_stride, window_rule
from tests.test_exact_physics import _driven_case

POWER_TERMS = ("field_work", "interaction", "quantum_flux", "boundary_flux", "absorbed",
               "quantum_nonlocal")


@pytest.mark.parametrize("w_steps,rule,stride", [(16, "newton_cotes", 4), (40, "newton_cotes", 3),
                                                 (10, "newton_cotes", 2), (10, "every_step", 1),
                                                 (7, "every_step", 1), (3, "newton_cotes", 5),
                                                 # a nearly static state allows any stride: the
                                                 # window bounds it (this once exhausted memory)
                                                 (2000, "newton_cotes", 10**9)])
def test_rule_averages_polynomials_exactly_and_uses_whole_steps(w_steps, rule, stride):
    r = window_rule(w_steps, rule, stride)
    assert r.steps[0] == 0 and r.steps[-1] == w_steps and np.all(np.diff(r.steps) > 0)
    assert np.issubdtype(r.steps.dtype, np.integer)
    if rule == "every_step":
        np.testing.assert_array_equal(r.steps, np.arange(w_steps + 1))
    else:
        assert np.diff(r.steps).max() <= stride + 1
    degree = min(4, w_steps)  # 5-node panels integrate degree 4 on any nodes
    s = r.steps / w_steps
    for p in range(degree + 1):
        assert abs(r.average(s**p) - 1.0 / (p + 1)) < 1e-13, p


def test_error_estimate_bounds_the_error_of_a_smooth_signal():
    w_steps, dt = 24, 0.05
    for stride in (1, 2, 3, 6):
        r = window_rule(w_steps, "newton_cotes", stride)
        t = r.steps * dt
        f = np.sin(3.0 * t + 0.3) + 0.5 * np.cos(1.7 * t)
        T = w_steps * dt
        exact = ((np.cos(0.3) - np.cos(3 * T + 0.3)) / 3 + 0.5 * np.sin(1.7 * T) / 1.7) / T
        assert abs(r.average(f) - exact) <= r.error_estimate(f)


def test_rule_is_sixth_order_in_the_node_spacing():
    """Boole panels: halving the spacing divides the error by ~2^6."""
    errs = []
    for w_steps in (8, 16, 32):
        r = window_rule(w_steps, "newton_cotes", 2)
        t = r.steps / w_steps
        errs.append(abs(r.average(np.exp(2.0 * t)) - (np.exp(2.0) - 1) / 2))
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(orders - 6) < 0.3), orders


def test_node_stride_from_the_phase_per_step():
    assert node_stride(0.1, 0.4) == 4
    assert node_stride(0.5, 0.4) == 1
    assert node_stride(0.0, 0.4) == 1


def _run(rule, phase=None, n=2, edge_phase=None):
    cfg = _driven_case(n, 128, dt=0.02, t_end=1.6, save_every=40)
    num = cfg.numerics if phase is None else dataclasses.replace(cfg.numerics,
                                                                window_node_phase=phase)
    if edge_phase is not None:
        num = dataclasses.replace(num, edge_node_phase=edge_phase)
    cfg = dataclasses.replace(cfg, numerics=dataclasses.replace(num, window_quadrature=rule))
    solver = ExactSolver(cfg)
    return solver, solver.run()


#: The smooth volume's edge terms: ratios by rho, integrated on the full nodes (module docs).
RATIO_TERMS = ("quantum_flux", "boundary_flux", "quantum_nonlocal")


def test_default_rule_agrees_with_every_step_and_keeps_the_exact_window_power():
    """At the default settings (window_node_phase 0.6 rad: here the full observables every 3 steps;
    edge_node_phase 0.4 rad: the sharp volume's edge terms every 2 steps) the window averages agree
    with the every-step rule to 1e-8 of the volume's largest term: every term of the sharp volume
    (measured <= 9.1e-9) and the bilinear terms of the smooth one (<= 2.3e-9 of the signal; 1.5e-8
    at 0.8 rad, 1.4e-7 at 1.0). The smooth volume's ratio terms (P_S, P_B and the balance P_N) are
    integrated on the full nodes: measured 6.6e-9 .. 6.4e-8, below 1e-6 and below the stored error
    estimate. The window power is (E(t+T) - E(t))/T on both rules and the window balance holds to
    round-off."""
    fast, b = _run("newton_cotes")
    assert fast.window_quadrature == "newton_cotes"
    assert (fast.node_stride, fast.edge_node_stride) == (3, 2)
    assert b.timings["edge_nodes"] > 0
    _, a = _run("every_step")
    for name in a.windows:
        wa, wb = a.windows[name], b.windows[name]
        scale = max(np.abs(wa[q]).max() for q in POWER_TERMS)
        smooth = name == "smooth"
        for q in POWER_TERMS + ("particle_flux",):
            diff = np.abs(wa[q] - wb[q]).max()
            if smooth and q in RATIO_TERMS:
                assert diff < 1e-6 * scale, (name, q)
                assert np.all(np.abs(wa[q] - wb[q]) <= wb["quadrature_error"]), (name, q)
            else:
                ref = np.abs(wa[q]).max() if q == "particle_flux" else scale
                assert diff < 1e-8 * ref, (name, q, diff / ref)
        np.testing.assert_allclose(wb["power"], wa["power"], rtol=0, atol=1e-13 * scale)
        e = b.volumes[name]["energy"]  # frames = window ends here (save_every = window)
        np.testing.assert_allclose(wb["power"], np.diff(e) / (40 * 0.02), atol=1e-12 * scale)
        total = (wb["field_work"] + wb["interaction"] + wb["quantum_flux"] + wb["quantum_nonlocal"]
                 + wb["boundary_flux"] - wb["absorbed"])
        np.testing.assert_allclose(total, wb["power"], atol=1e-12 * scale)
        # the stored estimate bounds the difference from the every-step rule
        assert np.all(np.abs(wa["field_work"] - wb["field_work"]) <= wb["quadrature_error"])
        assert wb["quadrature_error"].shape == wb["t_start"].shape


def test_edge_nodes_stand_in_for_full_evaluations_of_the_sharp_volume():
    """The sharp volume's edge terms from the edge-only evaluation between the full nodes equal
    those of a run that evaluates everything on the same (edge) nodes, to round-off; every other
    term moves to the coarser full nodes only."""
    split, b = _run("newton_cotes", phase=0.8, edge_phase=0.4)
    same, a = _run("newton_cotes", phase=0.4, edge_phase=0.4)
    assert split.edge_node_stride == same.node_stride == same.edge_node_stride == 2
    assert split.node_stride == 4 and a.timings["edge_nodes"] == 0
    wa, wb = a.windows["sharp"], b.windows["sharp"]
    scale = max(np.abs(wa[q]).max() for q in POWER_TERMS)
    for q in ("quantum_flux", "boundary_flux", "particle_flux"):
        np.testing.assert_allclose(wb[q], wa[q], rtol=0, atol=1e-12 * scale)
    assert np.abs(wb["field_work"] - wa["field_work"]).max() > 1e-13 * scale  # other nodes
    # an edge phase above the full one is the full one
    capped, _ = _run("newton_cotes", phase=0.4, edge_phase=0.8)
    assert capped.edge_node_stride == capped.node_stride == 2


@pytest.mark.slow
def test_window_terms_converge_at_high_order_in_the_node_spacing():
    """Against the every-step rule, doubling the node spacing (stride 2 -> 4 -> 8) multiplies the
    difference of the window field work by >= 2^4 (Boole panels: 2^6 asymptotically; measured
    27 and 407 on this run, whose nodes at stride 8 are a single panel of 5 nodes)."""
    _, a = _run("every_step")
    diffs = []
    for phase in (0.4, 0.8, 1.6):
        _, b = _run("newton_cotes", phase)
        diffs.append(np.abs(a.windows["sharp"]["field_work"] - b.windows["sharp"]["field_work"]).max())
    ratios = np.array(diffs[:-1]) / np.array(diffs[1:])
    assert diffs[0] < diffs[1] < diffs[2]
    assert np.all(np.log2(1 / ratios) > 3.3), ratios
