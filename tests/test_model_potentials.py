"""Grid, static potential pieces, tabulated potentials and the pair interaction (bohmpower.model)."""

from __future__ import annotations

import numpy as np
import pytest

from bohmpower.config import PotentialPiece
from bohmpower.errors import ConfigError
from bohmpower.model.grid import Grid
from bohmpower.model.interaction import Interaction, make_interaction
from bohmpower.model.potentials import (
    barrier,
    double_barrier,
    gaussian,
    harmonic,
    soft_coulomb_well,
    static_potential,
    table,
    well,
    window,
)
from bohmpower.units import BOHR_NM, HARTREE_EV


def test_grid_points_spacing_and_wavenumbers():
    g = Grid(-3.0, 5.0, 16)
    assert g.dx == 0.5 and g.length == 8.0
    assert np.array_equal(g.x, -3.0 + 0.5 * np.arange(16))  # x_max is not a point
    assert np.allclose(g.k, 2 * np.pi * np.fft.fftfreq(16, 0.5), rtol=0, atol=0)
    # The wavenumbers are the ones that differentiate a resolved periodic function exactly:
    # d/dx sin(2 pi m x / L) for m below Nyquist, to round-off.
    f = np.sin(2 * np.pi * 3 * (g.x - g.x_min) / g.length)
    df = np.fft.ifft(1j * g.k * np.fft.fft(f)).real
    exact = (2 * np.pi * 3 / g.length) * np.cos(2 * np.pi * 3 * (g.x - g.x_min) / g.length)
    assert np.max(np.abs(df - exact)) < 1e-13
    assert not g.x.flags.writeable


def test_grid_refuses_bad_edges():
    with pytest.raises(ConfigError) as e:
        Grid(1.0, 1.0, 8)
    assert e.value.key == "grid.x_max"


def test_sharp_window_is_one_inside_zero_outside_half_on_edges():
    x = np.array([-2.0, -1.0, -0.5, 0.0, 1.0, 1.5])
    assert np.array_equal(window(x, -1.0, 1.0, 0.0), [0.0, 0.5, 1.0, 1.0, 0.5, 0.0])


def test_smooth_window_tends_to_sharp_and_keeps_its_area():
    x = np.linspace(-5, 5, 2001)
    off_edge = np.abs(np.abs(x) - 2.0) > 0.1
    # Away from the edges the smooth window differs from the sharp one by ~exp(-2 * 0.1 / s).
    for s in (0.01, 0.005):
        diff = np.abs(window(x, -2, 2, s) - window(x, -2, 2, 0.0))[off_edge]
        assert diff.max() < 3 * np.exp(-2 * 0.1 / s)
    # On the line, integral of (1/2)[tanh((x-a)/s) - tanh((x-b)/s)] is exactly b - a; the trapezoid on a
    # fine grid with negligible tails reaches it to O(h^2 / s^2) ~ 1e-6.
    xf = np.linspace(-20, 20, 40001)
    area = np.trapezoid(window(xf, -2.0, 2.0, 0.5), xf)
    assert abs(area - 4.0) < 1e-6


def test_barrier_well_double_barrier_shapes():
    x = np.linspace(-10, 10, 2001)
    b = barrier(x, 1.0, 2.0, 0.3, 0.0)
    assert np.allclose(b[(x > 0.0) & (x < 2.0)], 0.3) and np.all(b[(x < 0.0) | (x > 2.0)] == 0)
    w = well(x, 1.0, 2.0, 0.4, 0.0)
    assert np.allclose(w[(x > 0.0) & (x < 2.0)], -0.4)
    # double barrier: centres at c -/+ (gap + width)/2, so the inner edges are `gap` apart
    d = double_barrier(x, 0.0, 1.0, 0.5, 3.0, 0.0)
    inside = d == 0.5
    xs = x[inside]
    assert np.isclose(xs[xs < 0].max(), -1.5, atol=0.011) and np.isclose(
        xs[xs > 0].min(), 1.5, atol=0.011
    )
    assert np.isclose(xs.min(), -2.5, atol=0.011) and np.isclose(xs.max(), 2.5, atol=0.011)
    # smoothed: height reached in the middle, half height on the edge
    bs = barrier(np.array([1.0, 0.0, 2.0]), 1.0, 2.0, 0.3, 0.05)
    assert np.allclose(bs, [0.3, 0.15, 0.15], atol=1e-12)


def test_gaussian_harmonic_soft_coulomb_formulas():
    x = np.linspace(-30, 30, 6001)
    g = gaussian(x, 2.0, 1.5, 0.7)
    # area height * width * sqrt(2 pi); trapezoid exact to exponential accuracy for a Gaussian
    assert abs(np.trapezoid(g, x) - 0.7 * 1.5 * np.sqrt(2 * np.pi)) < 1e-10
    h = harmonic(x, 1.0, 0.5, 2.0)
    # curvature U'' = m omega^2 (second differences are exact for a parabola up to round-off)
    curv = (h[2:] - 2 * h[1:-1] + h[:-2]) / (x[1] - x[0]) ** 2
    assert np.allclose(curv, 2.0 * 0.25, atol=1e-6)
    v = soft_coulomb_well(np.array([0.5, 1e6 + 0.5]), 0.5, 2.0, 1.5, eps_r=4.0)
    assert np.isclose(v[0], -2.0 / (4.0 * 1.5))
    assert np.isclose(v[1] * 1e6, -2.0 / 4.0, rtol=1e-10)  # Coulomb tail -charge/(eps_r r)


def test_static_potential_sums_pieces_with_mass_and_permittivity():
    g = Grid(-20.0, 20.0, 256)
    pieces = (
        PotentialPiece(kind="harmonic", center=1.0, omega=0.3),
        PotentialPiece(kind="soft_coulomb_well", center=0.0, charge=1.0, softening=1.0),
        PotentialPiece(kind="gaussian", center=-3.0, width=2.0, height=0.1),
    )
    u0 = static_potential(pieces, g, mass=0.5, eps_r=2.0)
    expect = (
        harmonic(g.x, 1.0, 0.3, 0.5)
        + soft_coulomb_well(g.x, 0.0, 1.0, 1.0, 2.0)
        + gaussian(g.x, -3.0, 2.0, 0.1)
    )
    assert np.array_equal(u0, expect)
    assert np.array_equal(static_potential((), g, 1.0), np.zeros(256))
    with pytest.raises(ConfigError) as e:
        static_potential((PotentialPiece(kind="cliff"),), g, 1.0)
    assert e.value.key == "potential[0].kind"


def test_table_in_device_units_is_converted_and_interpolated(tmp_path):
    # A piecewise linear potential is reproduced exactly by linear interpolation, so any deviation is a
    # unit-conversion or interpolation bug. U [eV] = 0.1 + 0.02 x [nm] for x < 0, 0.1 - 0.05 x for x >= 0.
    xs_nm = np.linspace(-2.0, 2.0, 41)
    us_ev = np.where(xs_nm < 0, 0.1 + 0.02 * xs_nm, 0.1 - 0.05 * xs_nm)
    f = tmp_path / "u.txt"
    np.savetxt(f, np.column_stack([xs_nm, us_ev]), header="x_nm U_eV")
    g = Grid(-30.0, 30.0, 120)  # [-30, 29.5] bohr = [-1.59, 1.56] nm, inside the table
    u = static_potential((PotentialPiece(kind="table", file=f, table_units="device"),), g, 1.0)
    x_nm = g.x * BOHR_NM
    expect = np.where(x_nm < 0, 0.1 + 0.02 * x_nm, 0.1 - 0.05 * x_nm) / HARTREE_EV
    assert np.max(np.abs(u - expect)) < 1e-15
    # atomic table: read as is
    fa = tmp_path / "ua.txt"
    np.savetxt(fa, np.column_stack([[-40.0, 40.0], [1.0, 3.0]]))
    assert np.allclose(table(g.x, fa, "atomic"), 2.0 + g.x / 40.0, atol=1e-15)


def test_table_that_does_not_cover_the_grid_is_refused(tmp_path):
    f = tmp_path / "short.txt"
    np.savetxt(f, np.column_stack([[-10.0, 10.0], [0.0, 1.0]]))
    g = Grid(-20.0, 20.0, 64)
    with pytest.raises(ConfigError) as e:
        static_potential(
            (
                PotentialPiece(kind="barrier", center=0, width=1, height=1),
                PotentialPiece(kind="table", file=f, table_units="atomic"),
            ),
            g,
            1.0,
        )
    assert e.value.key == "potential[1].file"
    assert "[-10, 10]" in e.value.message and "[-20, 19.375]" in e.value.message
    # covering exactly the grid points is enough (x_max is not a grid point)
    np.savetxt(f, np.column_stack([[-20.0, 19.375], [0.0, 1.0]]))
    table(g.x, f, "atomic")


def test_soft_coulomb_interaction_force_is_minus_derivative():
    w = Interaction("soft_coulomb", softening=1.2, eps_r=2.0)
    r = np.linspace(-6, 6, 121)
    h = 1e-4
    fd = (w.w(r + h) - w.w(r - h)) / (2 * h)
    # central difference error h^2 W'''/6 <~ 1e-8 * |W'''| with |W'''| < 1 here
    assert np.max(np.abs(w.dw(r) - fd)) < 1e-8
    assert np.isclose(w.w(0.0), 1 / (2.0 * 1.2)) and w.w_max == pytest.approx(1 / (2.0 * 1.2))
    assert np.allclose(w.w(np.array([3.0, -3.0])), 1 / (2.0 * np.sqrt(9 + 1.44)))


def test_harmonic_and_no_interaction():
    w = Interaction("harmonic", strength=0.5, r_max=10.0)
    r = np.array([-2.0, 0.0, 3.0])
    assert np.allclose(w.w(r), 0.25 * r**2) and np.allclose(w.dw(r), 0.5 * r)
    assert w.w_max == 0.5 * 0.5 * 100
    n = make_interaction(None, r_max=10.0)
    assert n.kind == "none" and n.w_max == 0.0
    assert np.array_equal(n.w(r), np.zeros(3)) and np.array_equal(n.dw(r), np.zeros(3))
    with pytest.raises(ConfigError) as e:
        Interaction("soft_coulomb", softening=0.0)
    assert e.value.key == "interaction.softening"
