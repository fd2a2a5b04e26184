"""The phase-per-step rule by propagator order (resolution rule 2, `resolution.phase_limit`).

The rule claims: an order-p run at its limit kappa_p max_phase^(2/p) makes a state error
ORDER_ERROR_MARGIN (10) times smaller than order 2 at max_phase, at any max_phase <= 1. kappa_p was
measured on the demo, a two-fermion collision and example 05 (scripts/bench_exact.py --orders); here it
is checked on a case held out of that calibration: example 02's exact run (two fermions through a biased
barrier, soft Coulomb, absorbing layers) on the smallest grid the resolution rule allows, t_end = 30.
Errors are in time only (one grid for every run), against order 6 at 0.8 rad per step.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from bohmpower.config import parse_config
from bohmpower.errors import ConfigError
from bohmpower.exact.propagator import SplitOperator
from bohmpower.model import build_model
from bohmpower.model.resolution import (
    ORDER_ERROR_MARGIN,
    ORDER_PHASE_FACTOR,
    check_time_step,
    phase_limit,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "02_two_electrons_exact_vs_cw"
T_END = 30.0


@pytest.fixture(scope="module")
def held_out():
    data = tomllib.loads((EXAMPLE / "exact.toml").read_text())
    data["grid"]["points"] = 144  # the resolution rule asks for 142
    data["time"].update(dt=0.5, t_end=T_END, save_every=60)
    data["time"].pop("window", None)
    data.setdefault("numerics", {}).update(max_phase=100.0)  # every phase below is built by hand
    model, _ = build_model(parse_config(data, EXAMPLE), command="exact")
    energy = model.resolution.phase / 0.5  # the rule's energy: phase per unit time [hartree]
    w = model.interaction.w
    shapes = np.array([d.potential_shape for d in model.drives]).reshape(-1, model.grid.n_x)
    psi0 = model.initial_state()

    def run(order: int, phase: float) -> np.ndarray:
        n = max(1, round(T_END * energy / phase))
        prop = SplitOperator(model.grid.x, model.mass, 2, model.u0, model.gamma, w, shapes,
                             [d.profile for d in model.drives], T_END / n, order=order,
                             fft_backend="scipy")
        psi = psi0.astype(np.complex128, copy=True)
        prop.advance(psi, 0.0, n)
        return psi

    ref = run(6, 0.8)  # its own error, ~1e-10, is 500x below the smallest error compared
    cache = {}

    def error(order: int, phase: float) -> float:
        if (order, phase) not in cache:
            cache[order, phase] = float(np.linalg.norm(run(order, phase) - ref) / np.linalg.norm(ref))
        return cache[order, phase]

    return energy, error


@pytest.mark.parametrize("order", [4, 6])
@pytest.mark.parametrize("max_phase", [1.0, 0.25])
def test_order_limit_keeps_the_error_a_margin_below_order_2_at_max_phase(held_out, order, max_phase):
    # The target: order 2 at max_phase. The order-p run at its limit must be at least
    # ORDER_ERROR_MARGIN below it (else the rule is too loose) and not more than 30 x that margin
    # below (else it refuses steps that are far more accurate than order 2's allowed one: with the
    # error growing as phi^4..phi^10 at these phases, a factor 30 is a phase 1.4-2.3x too small).
    _, error = held_out
    target = error(2, max_phase)
    limit = phase_limit(max_phase, order)
    assert limit > max_phase  # the higher orders are allowed longer steps
    err = error(order, limit)
    assert err <= target / ORDER_ERROR_MARGIN
    if max_phase == 1.0:  # kappa_p is set at max_phase = 1; below, the scaling is conservative
        assert err >= target / (30 * ORDER_ERROR_MARGIN)


def test_order_2_error_follows_the_asymptotic_law_the_rule_starts_from(held_out):
    # err_2 ~ c_2 Phi phi^2: halving the phase per step quarters the error (within 10 %).
    _, error = held_out
    assert error(2, 1.0) / error(2, 0.5) == pytest.approx(4.0, rel=0.1)
    assert error(2, 0.5) / error(2, 0.25) == pytest.approx(4.0, rel=0.1)


def test_phase_limit_values_and_refusal_message():
    assert phase_limit(1.0, 2) == 1.0 and phase_limit(0.5, 2) == 0.5
    assert phase_limit(1.0, 4) == ORDER_PHASE_FACTOR[4]
    assert phase_limit(0.25, 4) == pytest.approx(0.5 * ORDER_PHASE_FACTOR[4])
    assert phase_limit(0.125, 6) == pytest.approx(0.5 * ORDER_PHASE_FACTOR[6])
    with pytest.raises(ValueError):
        phase_limit(1.0, 3)
    k, m, prange = 2.0, 1.0, 1.0  # energy 3 hartree
    dt4 = ORDER_PHASE_FACTOR[4] / 3.0
    check_time_step(k, m, prange, dt4, 1.0, order=4)  # at the order-4 limit: allowed
    with pytest.raises(ConfigError) as e:
        check_time_step(k, m, prange, dt4 * (1 + 1e-9), 1.0, order=4)
    assert e.value.key == "time.dt" and "order-4 limit" in e.value.message
    with pytest.raises(ConfigError) as e:  # the same dt at order 2 is far above max_phase
        check_time_step(k, m, prange, dt4, 1.0, order=2)
    assert "above numerics.max_phase = 1" in e.value.message


def test_exact_run_uses_its_order_and_cw_run_order_2():
    data = tomllib.loads((EXAMPLE / "exact.toml").read_text())
    data["time"]["dt"] = 0.5  # 0.5 (k_reach^2/2 + range) is ~2.6 rad: above 1, below 3
    data.setdefault("numerics", {})["order"] = 4
    model, _ = build_model(parse_config(data, EXAMPLE), command="exact")
    assert model.resolution.order == 4 and 1.0 < model.resolution.phase < ORDER_PHASE_FACTOR[4]
    assert model.resolution.phase_limit == ORDER_PHASE_FACTOR[4]
    cw = tomllib.loads((EXAMPLE / "cw.toml").read_text())  # the same case for `bohmpower run`
    cw["time"]["dt"] = 0.5
    cw.setdefault("numerics", {})["order"] = 4
    with pytest.raises(ConfigError, match="max_phase = 1"):
        build_model(parse_config(cw, EXAMPLE), command="run")  # CWs: order-2 propagator


def test_check_prints_the_phase_per_step_against_the_order_limit():
    from bohmpower.estimates import _describe_exact

    data = tomllib.loads((EXAMPLE / "exact.toml").read_text())
    data["grid"]["points"] = 144
    data["time"].update(dt=0.5, t_end=1.0, save_every=2)
    data["time"].pop("window", None)
    data.setdefault("numerics", {})["order"] = 4
    cfg = parse_config(data, EXAMPLE)
    model, warnings = build_model(cfg, command="check")
    text = _describe_exact(cfg, model, warnings)
    assert "order 4 allows up to 3 rad (dt <= 0.8012" in text
