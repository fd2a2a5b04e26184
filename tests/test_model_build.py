"""Resolution rules on explicit numbers, and build_model on run configurations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_config
from scipy.special import erfcinv

from bohmpower.errors import ConfigError
from bohmpower.model import build_model
from bohmpower.model.grid import Grid
from bohmpower.model.initial import packet
from bohmpower.model.potentials import barrier
from bohmpower.model.resolution import (
    EXACT_ARRAYS,
    check_exact_memory,
    check_grid_resolution,
    check_time_step,
    exact_memory_bytes,
    grid_phase_warning,
    k_reach,
    orbital_k_content,
    packet_k_content,
    resolve,
)
from bohmpower.units import BOHR_NM, HARTREE_EV

# ---------------------------------------------------------------- rules on explicit numbers


def test_k_content_and_reach():
    assert packet_k_content(-0.8, 6.0) == 0.8 + 0.5
    assert k_reach(1.0, 2.0, -0.5, 0.25) == pytest.approx(math.sqrt(1.0 + 4.0 * 0.75))


def test_orbital_k_content_of_a_gaussian():
    # |phi(k)|^2 of a real Gaussian with density std w is a Gaussian of std 1/(2w) centred at 0; the
    # 1 - 1e-10 quantile of |k| is sqrt(2) erfcinv(1e-10) / (2w). The grid's k spacing (2 pi / 200)
    # bounds the discretisation error.
    g = Grid(-100.0, 100.0, 1024)
    w = 1.5
    expect = math.sqrt(2) * erfcinv(1e-10) / (2 * w)
    assert orbital_k_content(packet(g.x, 0.0, w, 0.0), g.k) == pytest.approx(
        expect, abs=2 * np.pi / 200
    )


def test_grid_rule_refuses_just_above_threshold_and_gives_minimum_points():
    length, n, frac = 100.0, 200, 0.8
    k_limit = frac * math.pi / (length / n)
    check_grid_resolution(k_limit, length, n, frac)  # at the threshold: allowed
    check_grid_resolution(k_limit * (1 - 1e-9), length, n, frac)
    with pytest.raises(ConfigError) as e:
        check_grid_resolution(k_limit * (1 + 1e-9), length, n, frac)
    # 201 points would do, but grid.points must be even: the hint names the smallest allowed count
    assert e.value.key == "grid.points" and "at least 202 points" in e.value.message
    # and the minimum it names is indeed enough
    check_grid_resolution(k_limit * (1 + 1e-9), length, 202, frac)


def test_dt_rule_refuses_just_above_threshold_and_gives_largest_dt():
    k, m, prange, phase = 2.0, 1.0, 1.0, 1.0
    dt_max = phase / (k**2 / (2 * m) + prange)  # = 1/3
    check_time_step(k, m, prange, dt_max, phase)
    check_time_step(k, m, prange, dt_max * (1 - 1e-9), phase)
    with pytest.raises(ConfigError) as e:
        check_time_step(k, m, prange, dt_max * (1 + 1e-9), phase)
    assert e.value.key == "time.dt" and "dt <= 0.333333" in e.value.message


def test_grid_phase_warning_threshold():
    dx, m = 0.1, 1.0
    dt_warn = math.pi / ((math.pi / dx) ** 2 / (2 * m))
    assert grid_phase_warning(dx, m, dt_warn * (1 - 1e-9), math.pi) == []
    msgs = grid_phase_warning(dx, m, dt_warn * (1 + 1e-9), math.pi)
    assert len(msgs) == 1 and isinstance(msgs[0], str)


def test_memory_rule():
    assert exact_memory_bytes(128, 3) == EXACT_ARRAYS * 16 * 128**3
    need = exact_memory_bytes(256, 2)
    assert check_exact_memory(256, 2, need / 1e9) == need  # exactly at the limit: allowed
    with pytest.raises(ConfigError) as e:
        check_exact_memory(256, 2, need / 1e9 * (1 - 1e-9))
    # 255 points would fit, but grid.points must be even: the hint names the largest allowed count
    assert e.value.key == "grid.points" and "at most 254 points" in e.value.message
    check_exact_memory(254, 2, need / 1e9 * (1 - 1e-9))  # and it does fit
    with pytest.raises(ConfigError):  # default: half the physical memory (no machine has 1.6 PB)
        check_exact_memory(10**5, 3, None)


def test_resolve_combines_bias_and_interaction():
    r = resolve(
        k_content=1.0,
        mass=1.0,
        length=100.0,
        n_x=512,
        dt=0.02,
        u0_range=0.3,
        bias_drop=0.2,
        w_max=1.0,
        n_particles=2,
        max_memory_gb=10.0,
    )
    assert r.k_reach == pytest.approx(math.sqrt(1 + 2 * 1.2))
    assert r.potential_range == pytest.approx(1.5)
    assert r.phase == pytest.approx(0.02 * (3.4 / 2 + 1.5))
    # dt (pi/dx)^2/2m = 2.59 rad < pi: no warning; dt = 0.05 gives 6.47 rad: warned, not refused
    assert (
        resolve(
            k_content=1.0,
            mass=1.0,
            length=100.0,
            n_x=512,
            dt=0.05,
            u0_range=0.3,
            bias_drop=0.2,
            w_max=1.0,
        ).warnings
        != ()
    )
    assert r.memory_bytes == EXACT_ARRAYS * 16 * 512**2 and r.warnings == ()


# ---------------------------------------------------------------- build_model


SPEC_EXAMPLE = {
    "particles": {"count": 2, "mass": 1.0, "statistics": "fermion"},
    "grid": {
        "x_min": -150.0,
        "x_max": 150.0,
        "points": 1024,
        "boundary": "absorbing",
        "absorber_width": 20.0,
    },
    "time": {"dt": 0.05, "t_end": 60.0, "save_every": 20, "window": 1.0},
    "potential": [
        {"kind": "barrier", "center": 0.0, "width": 4.0, "height": 0.25, "smoothing": 0.5}
    ],
    "field": [
        {"kind": "linear_drop", "bias": 0.1, "x_left": -20.0, "x_right": 20.0, "smoothing": 1.0}
    ],
    "interaction": {"kind": "soft_coulomb", "softening": 1.0, "relative_permittivity": 1.0},
    "initial": {
        "packet": [
            {"center": -60.0, "width": 6.0, "wavenumber": 0.8},
            {"center": -95.0, "width": 6.0, "wavenumber": 0.9},
        ]
    },
    "volume": [{"name": "device", "x_min": -20.0, "x_max": 20.0, "smoothing": 0.0}],
}


def test_build_spec_example():
    m, _ = build_model(make_config(**SPEC_EXAMPLE), "exact")
    assert (
        m.grid.n_x == 1024 and m.n_particles == 2 and m.statistics == "fermion" and not m.periodic
    )
    assert np.array_equal(m.u0, barrier(m.grid.x, 0.0, 4.0, 0.25, 0.5)) and m.orbitals.shape == (
        2,
        1024,
    )
    assert m.many_body_state is None and m.include_drive_potential is False
    assert [v.name for v in m.volumes] == ["device"]
    # k_content = 0.9 + 6/12, k_reach adds the bias and W(0) = 1
    assert m.resolution.k_reach == pytest.approx(math.sqrt(1.4**2 + 2 * (0.1 + 1.0)))
    assert m.absorber.automatic and m.absorber.max_reflection_transmission < 1e-3
    assert m.gamma[0] == pytest.approx(m.absorber.strength) and np.all(
        m.gamma[np.abs(m.grid.x) < 130] == 0
    )
    assert m.warnings == ()
    psi = m.initial_state()
    assert psi.shape == (1024, 1024) and np.sum(np.abs(psi) ** 2) * m.grid.dx**2 == pytest.approx(
        1.0
    )


def test_drive_sums_over_fields():
    fields = [
        {
            "kind": "linear_drop",
            "bias": 0.1,
            "x_left": -20.0,
            "x_right": 20.0,
            "smoothing": 1.0,
            "time_profile": "sine",
            "frequency": 0.05,
        },
        {"kind": "uniform", "force": 0.01, "origin": 3.0, "time_profile": "turn_on", "t_on": 2.0},
    ]
    m, _ = build_model(make_config(**{**SPEC_EXAMPLE, "field": fields}), "exact")
    t = 0.7
    d0, d1 = m.drives
    f0, f1 = np.sin(2 * np.pi * 0.05 * t), np.sin(np.pi * t / 4) ** 2
    assert np.allclose(
        m.drive_potential(t), f0 * d0.potential_shape + f1 * d1.potential_shape, atol=1e-15
    )
    assert np.allclose(m.drive_force(t), f0 * d0.force_shape + f1 * 0.01, atol=1e-15)
    df0, df1 = 2 * np.pi * 0.05 * np.cos(2 * np.pi * 0.05 * t), (np.pi / 4) * np.sin(np.pi * t / 2)
    assert np.allclose(
        m.drive_potential_dt(t), df0 * d0.potential_shape + df1 * d1.potential_shape, atol=1e-15
    )
    # uniform field on this grid: its drop force * length enters the rules
    assert m.resolution.bias_drop == pytest.approx(0.1 + 0.01 * 300.0)


def test_device_units_give_the_same_model():
    atomic, _ = build_model(make_config(**SPEC_EXAMPLE), "exact")
    nm, ev = BOHR_NM, HARTREE_EV
    dev = dict(SPEC_EXAMPLE)
    dev["units"] = {"system": "device"}
    dev["grid"] = {
        **SPEC_EXAMPLE["grid"],
        "x_min": -150 * nm,
        "x_max": 150 * nm,
        "absorber_width": 20 * nm,
    }
    dev["time"] = {
        "dt": 0.05 * 0.024188843265857,
        "t_end": 60 * 0.024188843265857,
        "save_every": 20,
        "window": 0.024188843265857,
    }
    dev["potential"] = [
        {
            "kind": "barrier",
            "center": 0.0,
            "width": 4 * nm,
            "height": 0.25 * ev,
            "smoothing": 0.5 * nm,
        }
    ]
    dev["field"] = [
        {
            "kind": "linear_drop",
            "bias": 0.1 * ev,
            "x_left": -20 * nm,
            "x_right": 20 * nm,
            "smoothing": 1 * nm,
        }
    ]
    dev["interaction"] = {"kind": "soft_coulomb", "softening": 1 * nm, "relative_permittivity": 1.0}
    dev["initial"] = {
        "packet": [
            {"center": -60 * nm, "width": 6 * nm, "wavenumber": 0.8 / nm},
            {"center": -95 * nm, "width": 6 * nm, "wavenumber": 0.9 / nm},
        ]
    }
    dev["volume"] = [{"name": "device", "x_min": -20 * nm, "x_max": 20 * nm, "smoothing": 0.0}]
    m, _ = build_model(make_config(**dev), "exact")
    assert m.config.units.system == "atomic"
    for a, b in [
        (m.u0, atomic.u0),
        (m.orbitals, atomic.orbitals),
        (m.drive_force(1.0), atomic.drive_force(1.0)),
    ]:
        assert np.allclose(a, b, rtol=1e-10, atol=1e-12)
    assert m.absorber.strength == pytest.approx(atomic.absorber.strength, rel=1e-6)


def test_refusals_name_the_key():
    with pytest.raises(ConfigError) as e:
        build_model(
            make_config(**{**SPEC_EXAMPLE, "grid": {**SPEC_EXAMPLE["grid"], "points": 200}})
        )
    assert e.value.key == "grid.points"
    with pytest.raises(ConfigError) as e:
        build_model(make_config(**{**SPEC_EXAMPLE, "time": {"dt": 0.5, "t_end": 60.0}}))
    assert e.value.key == "time.dt"
    # memory: three electrons on 1024 points would need 10 * 16 * 2^30 bytes = 172 GB
    three = {
        **SPEC_EXAMPLE,
        "particles": {"count": 3},
        "numerics": {"max_memory_gb": 100.0},
        "initial": {
            "packet": SPEC_EXAMPLE["initial"]["packet"]
            + [{"center": 60.0, "width": 6.0, "wavenumber": -0.5}]
        },
    }
    with pytest.raises(ConfigError) as e:
        build_model(make_config(**three), "exact")
    assert e.value.key == "grid.points" and "GB" in e.value.message
    build_model(
        make_config(**three, trajectories={"count": 10}), "run"
    )  # conditional wavefunctions: no rule


def test_eigenstates_and_many_body_state(tmp_path):
    base = {
        "particles": {"count": 2, "statistics": "fermion"},
        "grid": {"x_min": -30.0, "x_max": 30.0, "points": 256},
        # the eigenstates of this deep well reach k ~ 8 (1 - 1e-10 of their spectral weight), so the
        # dt rule asks for dt < 0.028
        "time": {"dt": 0.02, "t_end": 1.0},
        "potential": [{"kind": "soft_coulomb_well", "charge": 2.0, "softening": 1.0}],
        "interaction": {"kind": "soft_coulomb", "softening": 1.0},
        "volume": [{"name": "left", "x_min": -30.0, "x_max": 0.0}],
    }
    m, _ = build_model(make_config(**base, initial={"eigenstate": [{"index": 0}, {"index": 1}]}))
    assert m.orbitals.shape == (2, 256) and m.periodic and np.all(m.gamma == 0)
    with pytest.raises(ConfigError) as e:
        build_model(make_config(**base, initial={"eigenstate": [{"index": 0}, {"index": 60}]}))
    assert e.value.key == "initial.eigenstate[1].index"
    mb, _ = build_model(make_config(**base, initial={"many_body_state": 0}))
    assert mb.orbitals is None and mb.many_body_state == 0
    assert mb.resolution.k_content > 0
    with pytest.raises(ValueError):
        mb.initial_state()


def test_periodic_linear_drop_seam_and_chi():
    cfg = make_config(
        grid={"x_min": -40.0, "x_max": 40.0, "points": 512},  # dx = 0.16 resolves s' = 16/24
        field=[{"kind": "linear_drop", "bias": 0.05, "x_left": -10.0, "x_right": 10.0}],
        energy={"include_drive_potential": True},
        initial={"packet": [{"center": -28.0, "width": 2.0, "wavenumber": 0.5}]},
    )
    m, warnings = build_model(cfg)
    assert tuple(warnings) == m.warnings
    assert m.include_drive_potential is True
    assert m.seam.any() and m.seam[0] and not m.seam[m.grid.n_x // 2]
    # the packet starts next to the seam (return region is within 8 + 6*8/24 bohr of the cell edges)
    assert any("return-field region" in w for w in m.warnings)
    # zero-mean drive force over the periodic cell (rectangle rule exact for a resolved periodic field)
    assert abs(np.sum(m.drive_force(0.0)) * m.grid.dx) < 1e-10
