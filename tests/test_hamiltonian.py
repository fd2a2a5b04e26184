"""Pieces of the N-electron Hamiltonian: shapes, identities, spectral derivatives, eigenfunctions."""

from __future__ import annotations

import numpy as np
import pytest

from bohmpower.exact.hamiltonian import (
    apply_hamiltonian,
    coordinate,
    d_axis,
    half_pair_sum_on,
    kinetic_axis,
    one_body_sum,
    pair_sum,
)


def grid(length, n_x):
    x = -0.5 * length + np.arange(n_x) * (length / n_x)
    return x, 2 * np.pi * np.fft.fftfreq(n_x, d=length / n_x)


def soft_coulomb(r):
    return 1.0 / np.sqrt(r**2 + 1.0)


def test_coordinate_broadcasts_along_its_axis():
    x, _ = grid(10.0, 8)
    c = coordinate(x, 3, 1)
    assert c.shape == (1, 8, 1)
    full = np.broadcast_to(c, (8, 8, 8))
    assert np.array_equal(full[2, :, 5], x)
    with pytest.raises(ValueError):
        coordinate(x, 2, 2)


def test_one_body_pair_and_half_pair_sums_match_loops():
    x, _ = grid(10.0, 6)
    f = np.sin(x) + 0.3 * x
    n = 3
    ob = one_body_sum(f, n)
    ps = pair_sum(soft_coulomb, x, n)
    halves = [half_pair_sum_on(soft_coulomb, x, n, k) for k in range(n)]
    for i, j, k in np.ndindex(6, 6, 6):
        assert ob[i, j, k] == pytest.approx(f[i] + f[j] + f[k], rel=1e-14)
        pairs = soft_coulomb(x[i] - x[j]) + soft_coulomb(x[i] - x[k]) + soft_coulomb(x[j] - x[k])
        assert ps[i, j, k] == pytest.approx(pairs, rel=1e-14)
        own0 = 0.5 * (soft_coulomb(x[i] - x[j]) + soft_coulomb(x[i] - x[k]))
        assert halves[0][i, j, k] == pytest.approx(own0, rel=1e-14)
    # the interaction is shared half-half: no double counting
    assert np.allclose(sum(halves), ps, rtol=1e-14, atol=0)
    assert np.array_equal(pair_sum(None, x, 2), np.zeros((6, 6)))
    assert np.array_equal(half_pair_sum_on(None, x, 2, 0), np.zeros((6, 6)))


def test_d_axis_is_exact_on_resolved_plane_waves_and_kills_nyquist():
    # Spectral derivatives are exact (to round-off) for any mode below Nyquist.
    length, n_x = 2 * np.pi, 32
    x, kx = grid(length, n_x)
    psi = np.sin(3 * x)[:, None] * np.cos(5 * x)[None, :]
    d1 = d_axis(psi, kx, axis=1)
    assert np.allclose(d1, -5 * np.sin(3 * x)[:, None] * np.sin(5 * x)[None, :], atol=1e-12)
    d2 = d_axis(psi, kx, axis=0, order=2)
    assert np.allclose(d2, -9 * psi, atol=1e-11)
    nyquist = np.cos(16 * x)  # the Nyquist mode: its odd derivatives are set to zero
    assert np.max(np.abs(d_axis(nyquist, kx, 0))) < 1e-12
    assert np.allclose(d_axis(nyquist, kx, 0, order=2), -256 * nyquist, atol=1e-9)


def test_kinetic_axis_plane_wave():
    x, kx = grid(20.0, 64)
    k0 = kx[5]
    psi = np.exp(1j * k0 * x)[:, None] * np.exp(-1j * kx[3] * x)[None, :]
    mass = 0.067
    out = kinetic_axis(psi, kx, mass, axis=0)
    assert np.allclose(out, k0**2 / (2 * mass) * psi, rtol=0, atol=1e-10 * k0**2 / mass)


def test_apply_hamiltonian_harmonic_product_eigenstate_and_hermiticity():
    # Two electrons in a harmonic well (omega = 1) with a uniform drive force F = -0.2 (q phi = 0.2 x):
    # the shifted ground orbitals exp(-(x - x_F)^2/2), x_F = -0.2, have energy 1/2 - 0.02 each.
    # Spectral accuracy on this grid: residual < 1e-10.
    x, kx = grid(24.0, 96)
    dx = x[1] - x[0]
    u0 = 0.5 * x**2
    drive = 0.2 * x
    orb = np.exp(-0.5 * (x + 0.2) ** 2)
    psi = np.multiply.outer(orb, orb).astype(complex)
    hpsi = apply_hamiltonian(psi, x, kx, 1.0, u0, None, drive_1d=drive)
    assert np.max(np.abs(hpsi - 2 * (0.5 - 0.02) * psi)) < 1e-10
    # Hermitian with interaction: <a|H b> = <H a|b> to round-off
    rng = np.random.default_rng(0)
    a = np.exp(-0.05 * (x[:, None] ** 2 + x[None, :] ** 2)) * (rng.standard_normal((96, 96)) + 1j)
    b = np.exp(-0.05 * (x[:, None] ** 2 + x[None, :] ** 2)) * (rng.standard_normal((96, 96)) - 2j)
    ha = apply_hamiltonian(a, x, kx, 1.0, u0, soft_coulomb)
    hb = apply_hamiltonian(b, x, kx, 1.0, u0, soft_coulomb)
    lhs, rhs = np.vdot(a, hb) * dx**2, np.vdot(ha, b) * dx**2
    assert abs(lhs - rhs) < 1e-12 * abs(lhs)
