"""Volumes and their two functionals (bohmpower.model.volume): analytic integrals, limits, complements."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import erf

from bohmpower.errors import ConfigError
from bohmpower.model.grid import Grid
from bohmpower.model.volume import Volume, edge_functional, integral

L, X0 = 40.0, -20.0
SIG, MU = 1.5, 1.0


def gauss(x):
    return np.exp(-((x - MU) ** 2) / (2 * SIG**2))


def gauss_integral(a, b):
    c = SIG * np.sqrt(np.pi / 2)
    return c * (erf((b - MU) / (SIG * np.sqrt(2))) - erf((a - MU) / (SIG * np.sqrt(2))))


def fine(m=256):
    return X0 + L / m * np.arange(m)


def test_sharp_gaussian_matches_erf_while_edge_moves_across_grid_points():
    # The Gaussian's spectrum at the grid's Nyquist wavenumber (k = 20) is ~exp(-k^2 sig^2 / 2) ~ 1e-196,
    # so the trigonometric interpolant is exact to round-off: the only error allowed is ~1e-14.
    y = fine()
    f = gauss(y)
    h = y[1] - y[0]
    for b in np.linspace(2.0, 2.0 + 3 * h, 37):  # many edges between and on grid points
        vol = Volume("v", -1.3, b)
        assert integral(f, y, vol) == pytest.approx(gauss_integral(-1.3, b), abs=1e-13)
        assert edge_functional(f, y, vol) == pytest.approx(gauss(-1.3) - gauss(b), abs=1e-13)


def test_grid_object_and_points_give_the_same_answer():
    y = fine(128)
    f = gauss(y)
    vol = Volume("v", -3.0, 0.7)
    assert integral(f, Grid(X0, X0 + L, 128), vol) == pytest.approx(integral(f, y, vol), abs=1e-15)


def test_nyquist_mode_is_read_as_cosine():
    m = 64
    y = fine(m)
    kn = np.pi * m / L
    f = np.cos(kn * (y - X0))  # samples (-1)^i
    a, b = -3.1, 2.35
    exact = (np.sin(kn * (b - X0)) - np.sin(kn * (a - X0))) / kn
    assert integral(f, y, Volume("v", a, b)) == pytest.approx(exact, abs=1e-13)
    assert edge_functional(f, y, Volume("v", a, b)) == pytest.approx(
        np.cos(kn * (a - X0)) - np.cos(kn * (b - X0)), abs=1e-13
    )


@pytest.mark.parametrize("s", [0.3, 0.8])
def test_smooth_volume_against_adaptive_quadrature(s):
    # Theta_s has a spectrum ~1/sinh(pi k s/2); the rectangle rule with spacing h aliases k = 2 pi/h,
    # so its error is ~exp(-pi^2 s/h) (the documented condition s >~ dx); the tolerance is that bound.
    y = fine(256)
    h = y[1] - y[0]
    tol = 10 * np.exp(-np.pi**2 * s / h) + 1e-13
    vol = Volume("v", -1.3, 2.2, s)
    exact, _ = quad(lambda x: vol.theta(x) * gauss(x), X0, X0 + L, epsabs=1e-14, limit=200)
    assert integral(gauss(y), y, vol) == pytest.approx(exact, abs=tol)
    exact_edge, _ = quad(lambda x: vol.dtheta(x) * gauss(x), X0, X0 + L, epsabs=1e-14, limit=200)
    # Theta' has one more power of k in its spectrum, evaluated at the aliased k = 2 pi/h.
    assert edge_functional(gauss(y), y, vol) == pytest.approx(exact_edge, abs=tol * 2 * np.pi / h)


def test_smooth_tends_to_sharp_like_s_squared():
    # Theta_s - Theta_0 is odd about each edge, so the difference is O(s^2) (times f'): halving s
    # divides it by 4. A fine grid (dx = 0.01) keeps s >= 5 dx for every s used.
    y = fine(4096)
    f = gauss(y)
    sharp = integral(f, y, Volume("v", -1.3, 2.2))
    diffs = [abs(integral(f, y, Volume("v", -1.3, 2.2, s)) - sharp) for s in (0.2, 0.1, 0.05)]
    assert 3.8 < diffs[0] / diffs[1] < 4.2
    assert 3.8 < diffs[1] / diffs[2] < 4.2
    edge_sharp = edge_functional(f, y, Volume("v", -1.3, 2.2))
    edge_s = edge_functional(f, y, Volume("v", -1.3, 2.2, 0.05))
    assert abs(edge_s - edge_sharp) < 1e-2 * abs(edge_sharp)


@pytest.mark.parametrize("s", [0.0, 0.5])
def test_complement_identities(s):
    y = fine(256)
    f = gauss(y) * (1 + 0.3 * np.sin(0.5 * y))
    vol = Volume("v", -4.0, 3.0, s)
    comp = vol.complement(L)
    whole = Volume("all", X0, X0 + L)
    # Round-off: the two weight sets add to the rectangle rule (smooth) / to c_0 L (sharp).
    assert integral(f, y, vol) + integral(f, y, comp) == pytest.approx(integral(f, y, whole), abs=1e-13)
    assert edge_functional(f, y, vol) + edge_functional(f, y, comp) == pytest.approx(0.0, abs=1e-13)
    assert edge_functional(f, y, whole) == pytest.approx(0.0, abs=1e-14)
    np.testing.assert_allclose(vol.theta(y, period=L) + comp.theta(y, period=L), 1.0, atol=1e-14)


def test_theta_and_dtheta():
    sharp = Volume("v", -1.0, 1.0)
    np.testing.assert_array_equal(sharp.theta(np.array([-2.0, -1.0, 0.0, 1.0, 2.0])), [0, 0.5, 1, 0.5, 0])
    with pytest.raises(ValueError):
        sharp.dtheta(0.0)
    smooth = Volume("v", -1.0, 1.0, 0.3)
    x = np.linspace(-3, 3, 601)
    eps = 1e-5
    num = (smooth.theta(x + eps) - smooth.theta(x - eps)) / (2 * eps)
    np.testing.assert_allclose(smooth.dtheta(x), num, atol=1e-8)  # central difference error ~eps^2 Theta'''


@pytest.mark.parametrize(
    "args, key",
    [
        (("v", 1.0, 1.0, 0.0), "volume.x_max"),
        (("v", 0.0, 1.0, -0.1), "volume.smoothing"),
        (("bad name", 0.0, 1.0, 0.0), "volume.name"),
    ],
)
def test_bad_volumes_raise_config_error(args, key):
    with pytest.raises(ConfigError) as err:
        Volume(*args)
    assert err.value.key == key
