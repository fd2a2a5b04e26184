"""Driving fields: shapes, analytic forces, the periodic return field and the time profiles."""

from __future__ import annotations

import numpy as np
import pytest

from bohmpower.config import FieldPiece
from bohmpower.errors import ConfigError
from bohmpower.model.fields import (
    TimeProfile,
    lncosh,
    make_drive,
    periodic_ramp_field,
    ramp,
    seam_region,
)
from bohmpower.model.grid import Grid


def drop(**kw):
    base = {"kind": "linear_drop", "bias": 0.3, "x_left": -10.0, "x_right": 14.0, "smoothing": 1.5}
    base.update(kw)
    return FieldPiece(**base)


def spectral_derivative(f, grid):
    return np.fft.ifft(1j * grid.k * np.fft.fft(f)).real


def test_lncosh_is_stable_and_exact():
    z = np.linspace(-30, 30, 601)
    assert np.allclose(lncosh(z), np.log(np.cosh(z)), rtol=1e-14, atol=1e-14)
    big = lncosh(np.array([1e4, -1e6]))  # np.log(np.cosh(.)) overflows here
    assert np.all(np.isfinite(big)) and np.allclose(
        big, [1e4 - np.log(2), 1e6 - np.log(2)], rtol=1e-15
    )


def test_ramp_limits_and_slope():
    # s(-inf) = 0 and s(+inf) = 1: at 1e6 w the tails exp(-2e6) are far below round-off.
    s = ramp(np.array([-1e6, 1e6]), -10.0, 14.0, 1.5)
    assert abs(s[0]) < 1e-9 and abs(s[1] - 1) < 1e-9
    # midpoint value 1/2 by symmetry, slope 1/L there (tanh(L/2w) = 1 - 2e-7 here)
    assert np.isclose(ramp(2.0, -10.0, 14.0, 1.5), 0.5, atol=1e-15)
    # sharp ramp: piecewise linear
    assert np.allclose(
        ramp(np.array([-20.0, -10.0, 2.0, 14.0, 20.0]), -10.0, 14.0, 0.0), [0, 0, 0.5, 1, 1]
    )


def test_open_linear_drop_force_is_minus_gradient_and_drop_is_bias():
    g = Grid(-60.0, 60.0, 2400)
    d, warns = make_drive(drop(), g, periodic=False)
    assert warns == []
    # 4th-order central differences of g (h = 0.05, w = 1.5): error ~ h^4 g^(5) ~ 1e-8 * bias/L / w^4.
    h = g.dx
    gp = d.potential_shape
    fd = (-gp[4:] + 8 * gp[3:-1] - 8 * gp[1:-3] + gp[:-4]) / (12 * h)
    assert np.max(np.abs(d.force_shape[2:-2] + fd)) < 1e-7
    # the whole drop is the bias; the ramp pushes to +x with force bias/L in the middle
    assert np.isclose(d.potential(-1e5) - d.potential(1e5), 0.3, rtol=1e-12)
    assert np.isclose(d.force(2.0), 0.3 / 24.0, rtol=1e-6)
    assert d.drop == 0.3 and not d.periodic
    # off-grid callables agree with the grid arrays
    assert np.allclose(d.potential(g.x), d.potential_shape, rtol=0, atol=0)
    assert np.allclose(d.force(g.x), d.force_shape, rtol=0, atol=0)


def test_periodic_linear_drop_return_field():
    g = Grid(-100.0, 100.0, 4096)
    d, warns = make_drive(drop(), g, periodic=True)
    assert warns == []
    L, bias = 24.0, 0.3
    # force = -g' analytically; G is periodic and smooth (s' = 40/24 = 1.67 >> dx = 0.049), so the spectral
    # derivative is exact to round-off times the largest g (~ bias)
    assert np.max(np.abs(d.force_shape + spectral_derivative(d.potential_shape, g))) < 1e-10
    # G(x_min) = 0 and G continuous across the seam: G(x_max) -> G(x_min) = 0 up to exp(-24) tails
    assert d.potential(np.array(g.x_min)) == 0.0
    assert abs(d._g(np.array(g.x_max))) < 1e-9 * bias
    # zero-mean field over the cell (rectangle rule is spectrally exact for a periodic integrand)
    assert abs(np.sum(d.force_shape) * g.dx) < 1e-9 * bias
    # inside the ramp the force is bias/L (tanh(L/2w) = 1 - 2e-7), outside it (and off the seam) zero
    assert np.isclose(d.force(2.0), bias / L, rtol=1e-6)
    assert abs(d.force(-50.0)) < 1e-9 and abs(d.force(50.0)) < 1e-9
    # in the return region the force is -(L/ell) bias/L = -bias/ell, ell = 40
    assert np.isclose(d.force(g.x_min + 1.0), -bias / 40.0, rtol=1e-9)
    # periodic images give the same potential (trajectories may leave the cell)
    assert np.allclose(
        d.potential(np.array([3.0, 3.0 + 200.0, 3.0 - 400.0])), d.potential(3.0), atol=1e-13
    )


def test_periodic_field_shape_formula():
    # B(x) written out from SPEC.md, independently of the module's helpers
    x = np.linspace(-100, 100, 1001)
    xl, xr, w, x0, x1 = -10.0, 14.0, 1.5, -100.0, 100.0
    L, ell = xr - xl, 40.0
    sp = ell / 24
    B = 0.5 * (np.tanh((x - xl) / w) - np.tanh((x - xr) / w)) - (L / ell) * 0.5 * (
        2 - np.tanh((x - x0 - ell / 2) / sp) + np.tanh((x - x1 + ell / 2) / sp)
    )
    assert np.allclose(periodic_ramp_field(x, xl, xr, w, x0, x1), B, atol=1e-15)


def test_seam_region_mask_covers_the_return_field():
    g = Grid(-100.0, 100.0, 1024)
    mask = seam_region(g)
    ret = 0.5 * (
        2 - np.tanh((g.x - g.x_min - 20) / (40 / 24)) + np.tanh((g.x - g.x_max + 20) / (40 / 24))
    )
    assert np.all(mask[ret > 1e-5]) and not np.any(mask[ret < 1e-6])
    assert mask[0] and mask[-1] and not mask[512]


def test_ramp_near_the_seam_is_warned_about():
    g = Grid(-100.0, 100.0, 1024)
    _, warns = make_drive(drop(x_left=-95.0), g, periodic=True)
    assert any("return-field" in w for w in warns)


def test_uniform_field_and_its_refusal_on_periodic_grids():
    g = Grid(-20.0, 20.0, 64)
    d, _ = make_drive(FieldPiece(kind="uniform", force=0.02, origin=5.0), g, periodic=False)
    assert np.allclose(d.potential_shape, -0.02 * (g.x - 5.0)) and np.all(d.force_shape == 0.02)
    assert d.potential(5.0) == 0.0 and np.isclose(d.drop, 0.02 * 40)
    with pytest.raises(ConfigError) as e:
        make_drive(
            FieldPiece(kind="uniform", force=0.02, origin=0.0), g, periodic=True, key="field[2]"
        )
    assert e.value.key == "field[2].kind"


@pytest.mark.parametrize(
    "profile",
    [
        TimeProfile("constant"),
        TimeProfile("turn_on", t_on=3.0),
        TimeProfile("sine", frequency=0.3, phase=0.4),
        TimeProfile("gaussian_pulse", t0=4.0, duration=1.2),
    ],
)
def test_profile_derivative_matches_finite_differences(profile):
    t = np.linspace(0.05, 9.0, 300)
    h = 1e-5
    fd = (profile(t + h) - profile(t - h)) / (2 * h)
    # central differences: error h^2 |f'''| / 6 < 1e-9 for these profiles (|f'''| <~ 10)
    assert np.max(np.abs(profile.dt(t) - fd)) < 1e-8
    assert np.shape(profile(t)) == t.shape and isinstance(profile(1.0), float)


def test_profile_values():
    on = TimeProfile("turn_on", t_on=2.0)
    assert on(0.0) == 0.0 and on(1.0) == pytest.approx(0.5) and on(2.0) == 1.0 and on(7.0) == 1.0
    assert on.dt(2.5) == 0.0 and on(-1.0) == 0.0
    # derivative continuous at t_on (sin(pi) = 0)
    assert abs(on.dt(2.0 - 1e-12)) < 1e-11
    s = TimeProfile("sine", frequency=0.25, phase=0.0)
    assert s(1.0) == pytest.approx(1.0)  # sin(2 pi 0.25 * 1) = 1: frequency in cycles per time unit
    p = TimeProfile("gaussian_pulse", t0=3.0, duration=2.0)
    assert p(3.0) == 1.0 and p(5.0) == pytest.approx(np.exp(-0.5))  # duration = std of f(t)


def test_drive_profile_from_field_piece():
    g = Grid(-50.0, 50.0, 256)
    d, _ = make_drive(drop(time_profile="sine", frequency=0.1, phase=0.2), g, periodic=False)
    t = np.array([0.0, 1.0, 2.5])
    assert np.allclose(d.profile(t), np.sin(2 * np.pi * 0.1 * t + 0.2))
    assert np.allclose(d.profile_dt(t), 2 * np.pi * 0.1 * np.cos(2 * np.pi * 0.1 * t + 0.2))
    with pytest.raises(ConfigError) as e:
        make_drive(drop(time_profile="turn_on"), g, periodic=False, key="field[1]")
    assert e.value.key == "field[1].t_on"
