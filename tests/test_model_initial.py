"""Initial orbitals (packets, trains, eigenstates of U0) and the many-electron product state."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from bohmpower.errors import ConfigError
from bohmpower.model.grid import Grid
from bohmpower.model.initial import (
    gram_determinant,
    many_body_product,
    orbitals_from_config,
    packet,
    permutation_sign,
)
from bohmpower.model.spectrum import bound_eigenstates, kinetic_matrix, lowest_eigenstates


def test_packet_width_is_density_std_and_k0_is_mean_wavenumber():
    g = Grid(-60.0, 60.0, 2048)
    psi = packet(g.x, 3.0, 4.0, 0.7)
    rho = np.abs(psi) ** 2
    # rectangle rule on a periodic cell is exponentially accurate for a resolved, decayed Gaussian
    assert np.sum(rho) * g.dx == pytest.approx(1.0, abs=1e-13)
    mean = np.sum(g.x * rho) * g.dx
    assert mean == pytest.approx(3.0, abs=1e-12)
    assert np.sqrt(np.sum((g.x - mean) ** 2 * rho) * g.dx) == pytest.approx(4.0, abs=1e-12)
    dpsi = np.fft.ifft(1j * g.k * np.fft.fft(psi))
    assert (np.sum(np.conj(psi) * -1j * dpsi) * g.dx).real == pytest.approx(0.7, abs=1e-12)


def test_permutation_sign_equals_determinant_of_permutation_matrix():
    for n in (1, 2, 3, 4):
        for perm in itertools.permutations(range(n)):
            assert permutation_sign(perm) == round(np.linalg.det(np.eye(n)[list(perm)]))


def _orthonormal(n_orb, grid):
    _, states = lowest_eigenstates(0.5 * 0.3**2 * grid.x**2, grid, 1.0, n_orb)
    # give them phases, so that complex conjugation errors would show
    return states * np.exp(1j * 0.4 * np.arange(n_orb))[:, None] * np.exp(0.3j * grid.x)[None, :]


def test_slater_determinant_antisymmetry_and_norm_two_electrons():
    g = Grid(-20.0, 20.0, 64)
    phi = _orthonormal(2, g) * np.array([[1.7], [0.6]])  # any normalisation
    psi = many_body_product(phi, "fermion", g.dx)
    assert psi.shape == (64, 64)
    assert np.array_equal(psi, -psi.T)  # exact: each entry is a*b - c*d with the factors swapped
    assert np.sum(np.abs(psi) ** 2) * g.dx**2 == pytest.approx(1.0, abs=1e-13)


def test_slater_determinant_three_electrons_marginal_density_is_sum_of_orbital_densities():
    g = Grid(-20.0, 20.0, 48)
    phi = _orthonormal(3, g)
    psi = many_body_product(phi, "fermion", g.dx)
    assert np.sum(np.abs(psi) ** 2) * g.dx**3 == pytest.approx(1.0, abs=1e-13)
    for axes in [(1, 0, 2), (0, 2, 1), (2, 1, 0), (1, 2, 0)]:
        sign = permutation_sign(axes)
        assert np.max(np.abs(np.transpose(psi, axes) - sign * psi)) < 1e-15 * np.abs(psi).max() * 8
    # n(x) = N int |Psi|^2 dx2 dx3 = sum_j |phi_j(x)|^2 for orthonormal orbitals (exact on the grid,
    # since the eigenstates are orthonormal to round-off in the discrete inner product)
    n = 3 * np.sum(np.abs(psi) ** 2, axis=(1, 2)) * g.dx**2
    assert np.max(np.abs(n - np.sum(np.abs(phi) ** 2, axis=0))) < 1e-12


def test_two_argument_form_reads_dx_off_normalised_orbitals():
    g = Grid(-20.0, 20.0, 40)
    phi = _orthonormal(2, g)  # sum |phi|^2 dx = 1
    # the inferred dx carries the round-off of a sum over the grid (~1e-15 relative)
    a, b = many_body_product(phi, "fermion"), many_body_product(phi, "fermion", g.dx)
    assert np.max(np.abs(a - b)) < 1e-13 * np.abs(b).max()
    with pytest.raises(ValueError, match="pass dx"):
        many_body_product(phi * np.array([[1.0], [2.0]]), "fermion")


def test_four_electrons_work_unchanged():
    g = Grid(-10.0, 10.0, 12)
    phi = _orthonormal(4, g)
    psi = many_body_product(phi, "fermion", g.dx)
    assert psi.shape == (12,) * 4
    assert np.max(np.abs(np.swapaxes(psi, 1, 3) + psi)) < 1e-14
    assert np.sum(np.abs(psi) ** 2) * g.dx**4 == pytest.approx(1.0, abs=1e-12)


def test_distinguishable_product():
    g = Grid(-20.0, 20.0, 32)
    phi = np.array([packet(g.x, -3, 2, 0.5), packet(g.x, 4, 3, -0.2)])
    psi = many_body_product(phi, "distinguishable", g.dx)
    n0 = np.sqrt(np.sum(np.abs(phi) ** 2, axis=1) * g.dx)
    assert np.allclose(psi, np.outer(phi[0] / n0[0], phi[1] / n0[1]), rtol=0, atol=1e-15)


def test_dependent_orbitals_are_refused_for_fermions():
    g = Grid(-20.0, 20.0, 64)
    a = packet(g.x, 0.0, 2.0, 0.5)
    with pytest.raises(ConfigError) as e:
        many_body_product(np.array([a, 2j * a]), "fermion", g.dx)
    assert e.value.key == "initial" and "linearly dependent" in e.value.message
    b = packet(g.x, 5.0, 2.0, 0.5)
    c = a + b
    with pytest.raises(ConfigError):
        many_body_product(np.array([a, b, c]), "fermion", g.dx)
    # well separated packets are nearly orthogonal: det S = 1 - |<a|b>|^2 with <a|b> = exp(-d^2/(8 w^2))
    assert gram_determinant(np.array([a, b]), g.dx) == pytest.approx(
        1 - np.exp(-25 / 32) ** 2, abs=1e-12
    )


def test_kinetic_matrix_is_the_spectral_operator():
    g = Grid(-5.0, 7.0, 24)
    rng = np.random.default_rng(1)
    f = rng.normal(size=24) + 1j * rng.normal(size=24)
    t = kinetic_matrix(g, 0.7)
    assert np.allclose(t, t.T, atol=0)
    assert np.allclose(t @ f, np.fft.ifft(g.k**2 / 1.4 * np.fft.fft(f)), atol=1e-12)


def test_harmonic_oscillator_levels_with_mass():
    # (n + 1/2) omega whatever the mass; the spectral grid resolves these Gaussians to ~1e-12
    g = Grid(-12.0, 12.0, 128)
    m, w = 2.0, 0.8
    e, states = lowest_eigenstates(0.5 * m * w**2 * g.x**2, g, m, 5)
    assert np.allclose(e, (np.arange(5) + 0.5) * w, atol=1e-10)
    assert np.allclose(states @ states.T * g.dx, np.eye(5), atol=1e-12)


@pytest.mark.parametrize(
    "a2, levels",
    [(2.0, [-0.5, -0.232903]), (1.0, [-0.669777, -0.274891, -0.151455])],
)
def test_soft_coulomb_levels(a2, levels):
    # REFERENCE_VALUES.md (6 decimals); the grid [-60, 60) with dx = 0.25 is converged far beyond that
    g = Grid(-60.0, 60.0, 480)
    u0 = -1.0 / np.sqrt(g.x**2 + a2)
    e, _ = bound_eigenstates(u0, g, 1.0, list(range(len(levels))))
    assert np.allclose(e, levels, atol=1e-6)


def test_unbound_eigenstates_are_refused():
    g = Grid(-30.0, 30.0, 240)
    u0 = -1.0 / np.sqrt(g.x**2 + 2.0)
    with pytest.raises(ConfigError) as e:
        bound_eigenstates(
            u0, g, 1.0, [0, 40], keys=["initial.eigenstate[0].index", "initial.eigenstate[1].index"]
        )
    assert e.value.key == "initial.eigenstate[1].index" and "not bound" in e.value.message
    # bound in energy but squeezed against the edges of a too small grid: not localised
    g = Grid(-8.0, 8.0, 64)
    u0 = -1.0 / np.sqrt(g.x**2 + 1.0)
    with pytest.raises(ConfigError) as e:
        bound_eigenstates(u0, g, 1.0, [2])
    assert e.value.key == "initial.eigenstate[0].index" and "not localised" in e.value.message


def test_orbitals_in_order_packets_train_eigenstates():
    g = Grid(-40.0, 40.0, 256)
    u0 = 0.5 * 0.5**2 * g.x**2
    init = SimpleNamespace(
        packet=(SimpleNamespace(center=-10.0, width=2.0, wavenumber=0.5),),
        train=SimpleNamespace(count=2, first_center=5.0, spacing=8.0, width=1.5, wavenumber=-0.3),
        eigenstate=(SimpleNamespace(index=1),),
        many_body_state=None,
    )
    orb, warns = orbitals_from_config(init, g, u0, 1.0)
    assert orb.shape == (4, 256) and warns == []
    assert np.allclose(np.sum(np.abs(orb) ** 2, axis=1) * g.dx, 1.0, atol=1e-14)
    centers = np.sum(g.x * np.abs(orb) ** 2, axis=1) * g.dx
    assert np.allclose(centers[:3], [-10.0, 5.0, 13.0], atol=1e-10)
    _, states = lowest_eigenstates(u0, g, 1.0, 2)
    assert np.allclose(orb[3], states[1], atol=1e-14)
