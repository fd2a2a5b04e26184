"""Initial configurations drawn from |Psi0|^2 (bohmpower.model.sampling).

Reference laws are computed here from the analytic orbitals (Hermite functions, SPEC.md Gaussian packets),
never from the sampler's own machinery. Every statistical check uses one threshold fixed before looking at
the data: reject if p < P_MIN, at a fixed seed.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
from numpy.polynomial import hermite
from scipy import integrate, stats

from bohmpower.errors import ConfigError
from bohmpower.model import sampling
from bohmpower.model.sampling import (
    sample_configurations,
    sample_grid,
    sample_product,
    sample_rng,
    sample_slater,
)

P_MIN = 1e-3
N_SAMPLES = 20000
SEED = 20240611


def grid_points(x_min: float, x_max: float, n: int) -> np.ndarray:
    """bohmpower's grid convention: x_i = x_min + i (x_max - x_min)/n."""
    return x_min + np.arange(n) * (x_max - x_min) / n


def hermite_function(x, k: int) -> np.ndarray:
    """Harmonic-oscillator eigenfunction k (m = omega = 1), normalised."""
    coeffs = np.zeros(k + 1)
    coeffs[k] = 1.0
    norm = 1.0 / math.sqrt(2.0**k * math.factorial(k) * math.sqrt(math.pi))
    return norm * hermite.hermval(x, coeffs) * np.exp(-0.5 * np.asarray(x) ** 2)


def packet(x, center: float, width: float, wavenumber: float) -> np.ndarray:
    """SPEC.md packet: |psi|^2 is a normal density of mean `center` and standard deviation `width`."""
    x = np.asarray(x)
    return (2 * np.pi * width**2) ** -0.25 * np.exp(
        -((x - center) ** 2) / (4 * width**2) + 1j * wavenumber * x
    )


# Invertible complex mixings: the sampler must see only the span of the orbitals.
MIX = {
    2: np.array([[1.0, 0.5], [0.3j, 1.0j]]),
    3: np.array([[1.0, 0.5, 0.0], [0.3j, 1.0j, -0.3], [0.2 + 0.4j, 0.0, 1.0]]),
}

HO_X = grid_points(
    -10.0, 10.0, 64
)  # Hermite functions 0..2 are resolved to ~1e-20 and vanish at the edges


def ho_orbitals(n: int, x=HO_X) -> np.ndarray:
    return MIX[n] @ np.array([hermite_function(x, k) for k in range(n)])


@functools.cache
def ho_slater_samples(n: int) -> np.ndarray:
    return sample_configurations("slater", ho_orbitals(n), HO_X, SEED, np.arange(N_SAMPLES))


def ho_density(x, n: int) -> np.ndarray:
    """One-particle density n(x) of the Slater determinant of Hermite functions 0..n-1."""
    return sum(hermite_function(x, k) ** 2 for k in range(n))


def cdf_from_density(func, lo=-10.0, hi=10.0, n=200001):
    """Continuous CDF of a 1D density by cumulative trapezoid (error ~ 1e-10 at this spacing)."""
    xs = np.linspace(lo, hi, n)
    c = integrate.cumulative_trapezoid(func(xs), xs, initial=0.0)
    c /= c[-1]
    return lambda y: np.interp(y, xs, c)


def bin_probabilities_2d(density2, edges, lo=-10.0, hi=10.0, step=1.0 / 40):
    """Probabilities of the 2D bins (edges on multiples of `step`) by the midpoint rule, normalised.

    The midpoint rule's relative error ~ step^2 |f''| / 24 ~ 1e-4 is far below the ~5% counting noise
    of a bin.
    """
    mids = np.arange(lo + step / 2, hi, step)
    f = density2(mids[:, None], mids[None, :])
    f = f / f.sum()
    which = np.digitize(mids, edges) - 1
    n_bins = len(edges) - 1
    probs = np.zeros((n_bins, n_bins))
    np.add.at(probs, (which[:, None], which[None, :]), f)
    return probs


def chi2_pvalue(counts, probs) -> float:
    """Pearson chi-square p-value; bins expecting fewer than 5 counts are merged into one."""
    counts = np.ravel(counts).astype(float)
    expected = np.ravel(probs) * counts.sum()
    small = expected < 5
    obs = list(counts[~small])
    exp = list(expected[~small])
    if small.any():
        obs.append(counts[small].sum())
        exp.append(expected[small].sum())
    obs, exp = np.array(obs), np.array(exp)
    if exp[-1] < 5:  # fold a still-small merged bin into the smallest regular bin
        j = np.argmin(exp[:-1])
        obs[j] += obs[-1]
        exp[j] += exp[-1]
        obs, exp = obs[:-1], exp[:-1]
    chi = np.sum((obs - exp) ** 2 / exp)
    return float(stats.chi2.sf(chi, len(obs) - 1))


PAIR_EDGES = np.concatenate([[-10.0], np.arange(-3.5, 3.51, 0.5), [10.0]])


# ------------------------------------------------------------------------------------------------
# Seeds and reproducibility
# ------------------------------------------------------------------------------------------------


def test_sample_rng_is_child_i_of_the_spawned_root_sequence():
    root_children = np.random.SeedSequence(SEED).spawn(12)
    for i in (0, 1, 11):
        expected = np.random.default_rng(root_children[i]).random(5)
        assert np.array_equal(sample_rng(SEED, i).random(5), expected)
    assert not np.array_equal(sample_rng(SEED, 0).random(5), sample_rng(SEED, 1).random(5))
    assert not np.array_equal(sample_rng(SEED, 3).random(5), sample_rng(SEED + 1, 3).random(5))


def test_sample_rng_rejects_negative_seed():
    with pytest.raises(ConfigError) as err:
        sample_rng(-1, 0)
    assert err.value.key == "trajectories.seed"


REPRO_X = grid_points(-8.0, 8.0, 32)
REPRO_PACKETS = np.array(
    [
        packet(REPRO_X, -1.0, 1.0, 0.8),
        packet(REPRO_X, 0.5, 0.8, -0.4),
        packet(REPRO_X, 2.0, 1.2, 0.0),
    ]
)
REPRO_DATA = {
    "slater": (REPRO_PACKETS, sample_slater),
    "product": (REPRO_PACKETS, sample_product),
    "grid": (
        np.outer(REPRO_PACKETS[0], REPRO_PACKETS[1]) - np.outer(REPRO_PACKETS[1], REPRO_PACKETS[0]),
        sample_grid,
    ),
}


@pytest.mark.parametrize("kind", sorted(REPRO_DATA))
def test_a_sample_depends_only_on_seed_and_id(kind, monkeypatch):
    data, single = REPRO_DATA[kind]
    length = REPRO_X.size * (REPRO_X[1] - REPRO_X[0])
    full = sample_configurations(kind, data, REPRO_X, SEED, np.arange(300))
    assert full.shape == (300, data.shape[0] if kind != "grid" else data.ndim)
    assert np.all((full >= REPRO_X[0]) & (full < REPRO_X[0] + length))
    # Same draws, other batch compositions: equal up to the summation order of the batched arithmetic
    # (round-off; Newton stops at 1e-13 of a fine cell): 1e-12 of the cell length is ample.
    tol = 1e-12 * length
    alone = sample_configurations(kind, data, REPRO_X, SEED, [17])
    mixed = sample_configurations(kind, data, REPRO_X, SEED, [39, 17, 3])
    direct = single(data, REPRO_X, sample_rng(SEED, 17))
    np.testing.assert_allclose(alone[0], full[17], rtol=0, atol=tol)
    np.testing.assert_allclose(mixed[1], full[17], rtol=0, atol=tol)
    np.testing.assert_allclose(mixed[[0, 2]], full[[39, 3]], rtol=0, atol=tol)
    np.testing.assert_allclose(direct, full[17], rtol=0, atol=tol)
    # Chunks of one sample each (as if every sample ran on its own rank).
    monkeypatch.setattr(sampling, "_CHUNK_ELEMENTS", 1)
    np.testing.assert_allclose(
        sample_configurations(kind, data, REPRO_X, SEED, np.arange(40)), full[:40], rtol=0, atol=tol
    )
    other_seed = sample_configurations(kind, data, REPRO_X, SEED + 1, np.arange(40))
    assert np.all(np.abs(other_seed - full[:40]).max(axis=1) > 1e-6)


# ------------------------------------------------------------------------------------------------
# Slater determinants: one- and two-particle laws, coincidence
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3])
def test_slater_one_particle_density(n):
    """Each electron (random order) follows n(x)/N of the determinant: KS test on 20000 samples."""
    samples = ho_slater_samples(n)
    cdf = cdf_from_density(lambda y: ho_density(y, n))
    for column in (0, n - 1):
        assert stats.kstest(samples[:, column], cdf).pvalue >= P_MIN


def test_slater_pair_density_three_fermions():
    """Electrons 0 and 1 follow [n(x) n(y) - K(x, y)^2] / (N (N - 1)): binned 2D chi-square."""
    n = 3
    samples = ho_slater_samples(n)

    def pair(xa, xb):
        kernel = sum(hermite_function(xa, k) * hermite_function(xb, k) for k in range(n))
        return ho_density(xa, n) * ho_density(xb, n) - kernel**2

    probs = bin_probabilities_2d(pair, PAIR_EDGES)
    counts, _, _ = np.histogram2d(samples[:, 0], samples[:, 1], [PAIR_EDGES, PAIR_EDGES])
    assert chi2_pvalue(counts, probs) >= P_MIN


def test_slater_pair_density_of_overlapping_complex_packets():
    """Two non-orthogonal moving packets: |phi_a(x) phi_b(y) - phi_b(x) phi_a(y)|^2, binned 2D chi-square."""
    x = HO_X
    args_a, args_b = (-1.0, 1.0, 1.0), (1.5, 1.0, -0.5)
    samples = sample_configurations(
        "slater", np.array([packet(x, *args_a), packet(x, *args_b)]), x, SEED, np.arange(N_SAMPLES)
    )

    def pair(xa, xb):
        det = packet(xa, *args_a) * packet(xb, *args_b) - packet(xa, *args_b) * packet(xb, *args_a)
        return np.abs(det) ** 2

    edges = np.concatenate([[-10.0], np.arange(-4.0, 5.01, 0.5), [10.0]])
    probs = bin_probabilities_2d(pair, edges)
    counts, _, _ = np.histogram2d(samples[:, 0], samples[:, 1], [edges, edges])
    assert chi2_pvalue(counts, probs) >= P_MIN


def test_fermions_never_coincide_and_pair_distance_scales_as_r_squared():
    """|det|^2 of Hermite functions 0, 1 is (x - y)^2 exp(-(x^2 + y^2)) / (2 pi): |x1 - x2| is exactly
    Maxwell-distributed (scale 1), whose density vanishes like r^2 at coincidence."""
    samples = ho_slater_samples(2)
    r = np.abs(samples[:, 0] - samples[:, 1])
    maxwell = stats.maxwell(scale=1.0)
    assert stats.kstest(r, maxwell.cdf).pvalue >= P_MIN
    # Within two grid cells of coincidence: the conditional law F(r)/F(r0) ~ (r/r0)^3, i.e. density ~ r^2.
    r0 = 0.6
    near = r[r < r0]
    assert near.size > 500  # enough to resolve the shape (expected ~ 20000 F(0.6) ~ 1000)
    assert stats.kstest(near, lambda s: maxwell.cdf(s) / maxwell.cdf(r0)).pvalue >= P_MIN
    # Almost no pairs closer than 0.05 (expected 20000 F(0.05) ~ 0.7): a Poisson bound at P_MIN.
    bound = stats.poisson.ppf(1 - P_MIN, N_SAMPLES * maxwell.cdf(0.05))
    assert np.count_nonzero(r < 0.05) <= bound
    # Control: distinguishable electrons in the same orbitals do meet, and fail that bound by far.
    product = sample_configurations("product", ho_orbitals(2), HO_X, SEED, np.arange(N_SAMPLES))
    assert np.count_nonzero(np.abs(product[:, 0] - product[:, 1]) < 0.05) > 10 * bound


# ------------------------------------------------------------------------------------------------
# Products and full grids
# ------------------------------------------------------------------------------------------------


def test_product_sampler_is_exact_inside_grid_cells():
    """Coarse grid (dx = 0.5, packet width 0.7: the density changes 3x across a cell): histogram with
    four bins per grid cell against the normal law; a second electron independent of the first."""
    x = grid_points(-8.0, 8.0, 32)
    a, b = (0.3, 0.7, 0.9), (-1.2, 1.1, -0.6)
    samples = sample_configurations(
        "product", np.array([packet(x, *a), packet(x, *b)]), x, SEED, np.arange(N_SAMPLES)
    )
    edges = np.arange(-8.0, 8.001, 0.125)
    counts, _ = np.histogram(samples[:, 0], edges)
    probs = np.diff(stats.norm(a[0], a[1]).cdf(edges))
    assert chi2_pvalue(counts, probs) >= P_MIN
    assert stats.kstest(samples[:, 1], stats.norm(b[0], b[1]).cdf).pvalue >= P_MIN
    edges2 = np.concatenate([[-8.0], np.arange(-3.0, 3.01, 0.5), [8.0]])
    counts2, _, _ = np.histogram2d(samples[:, 0], samples[:, 1], [edges2, edges2])
    probs2 = np.outer(
        np.diff(stats.norm(a[0], a[1]).cdf(edges2)), np.diff(stats.norm(b[0], b[1]).cdf(edges2))
    )
    assert chi2_pvalue(counts2, probs2) >= P_MIN


class FixedUniforms:
    """Stands in for a Generator: returns the given uniforms (the samplers only call ``random``)."""

    def __init__(self, values):
        self.values = np.asarray(values, dtype=float)

    def random(self, shape):
        assert tuple(shape) == self.values.shape
        return self.values


def test_draw_inverts_the_exact_cdf_inside_the_chosen_cell():
    """Deterministic: with uniforms (u0, u1), the fine cell [y_i, y_i + dx/2) is the one holding the
    quantile u0, and F(x) = F(y_i) + u1 (F(y_i + dx/2) - F(y_i)), with F the exact normal CDF of the
    packet. The packet is resolved to ~e^-40 and clear of the cell edges, so its interpolant is the
    analytic Gaussian to ~1e-15; 1e-12 then tests the in-cell inversion itself (a linear interpolant of
    the density inside the cell would be off by ~1e-4 here)."""
    x = grid_points(-12.0, 12.0, 48)
    center, width = 0.3, 1.2
    orbital = packet(x, center, width, 0.9)[None]
    cdf = stats.norm(center, width).cdf
    h = (x[1] - x[0]) / 2
    for u0, u1 in [(0.5, 0.5), (0.1, 0.9), (0.93, 0.27), (0.3, 0.01), (0.77, 0.999)]:
        pos = sample_product(orbital, x, FixedUniforms([[u0, u1]]))[0]
        i = np.floor((pos - x[0]) / h)
        left, right = x[0] + i * h, x[0] + (i + 1) * h
        assert cdf(left) <= u0 + 1e-12 and u0 < cdf(right) + 1e-12
        assert abs(cdf(pos) - (cdf(left) + u1 * (cdf(right) - cdf(left)))) < 1e-12


def test_grid_sampler_reproduces_a_product_density():
    x = HO_X
    a, b = (-1.0, 1.0, 0.7), (2.0, 0.6, -1.0)
    psi = np.outer(packet(x, *a), packet(x, *b))
    samples = sample_configurations("grid", psi, x, SEED, np.arange(N_SAMPLES))
    assert stats.kstest(samples[:, 0], stats.norm(a[0], a[1]).cdf).pvalue >= P_MIN
    assert stats.kstest(samples[:, 1], stats.norm(b[0], b[1]).cdf).pvalue >= P_MIN
    edges = np.concatenate([[-10.0], np.arange(-3.0, 4.01, 0.5), [10.0]])
    counts, _, _ = np.histogram2d(samples[:, 0], samples[:, 1], [edges, edges])
    probs = np.outer(
        np.diff(stats.norm(a[0], a[1]).cdf(edges)), np.diff(stats.norm(b[0], b[1]).cdf(edges))
    )
    assert chi2_pvalue(counts, probs) >= P_MIN


def test_grid_sampler_three_electrons_product_density():
    x = grid_points(-8.0, 8.0, 32)
    params = [(-2.0, 0.9, 0.5), (0.5, 1.0, 0.0), (2.5, 0.8, -0.7)]
    psi = np.einsum("i,j,k->ijk", *[packet(x, *p) for p in params])
    samples = sample_configurations("grid", psi, x, SEED, np.arange(4000))
    for column, (center, width, _) in enumerate(params):
        assert stats.kstest(samples[:, column], stats.norm(center, width).cdf).pvalue >= P_MIN


@pytest.mark.parametrize("n", [2, 3])
def test_grid_sampler_on_a_determinant_equals_the_slater_chain(n):
    """Psi = det on the full grid: the grid sampler's marginal and conditionals are exactly the
    projection-DPP chain's, and both consume the same uniforms, so the positions coincide (up to the
    random order of the Slater output)."""
    x = grid_points(-8.0, 8.0, 32)
    orbitals = ho_orbitals(n, x)
    psi = np.zeros((x.size,) * n, dtype=complex)
    for perm in itertools.permutations(range(n)):
        sign = np.linalg.det(np.eye(n)[list(perm)])
        psi += sign * functools.reduce(np.multiply.outer, [orbitals[p] for p in perm])
    ids = np.arange(300)
    chain = sample_configurations("slater", orbitals, x, SEED, ids)
    on_grid = sample_configurations("grid", psi, x, SEED, ids)
    # Two round-off paths to the same exact draws; the in-cell Newton's noise floor is ~1e-12 of a cell
    # in the tails, so 1e-9 bohr leaves room while any real difference would be ~0.1 bohr.
    np.testing.assert_allclose(
        np.sort(chain, axis=1), on_grid if n == 1 else np.sort(on_grid, axis=1), rtol=0, atol=1e-9
    )
    assert not np.allclose(chain, np.sort(chain, axis=1))  # the Slater output order is shuffled


# ------------------------------------------------------------------------------------------------
# Refusals
# ------------------------------------------------------------------------------------------------


def test_refusals():
    x = REPRO_X
    with pytest.raises(ConfigError):
        sample_configurations(
            "slater", np.array([REPRO_PACKETS[0], 2j * REPRO_PACKETS[0]]), x, 1, [0]
        )
    with pytest.raises(ConfigError) as err:
        sample_configurations("grid", np.ones((4,) * 4), np.arange(4.0), 1, [0])
    assert err.value.key == "particles.count"
    with pytest.raises(ValueError):
        sample_configurations("boson", REPRO_PACKETS, x, 1, [0])
    with pytest.raises(ValueError):
        sample_configurations("product", REPRO_PACKETS, x**3, 1, [0])
    with pytest.raises(ValueError):
        sample_configurations("product", REPRO_PACKETS, x, 1, [-1])
    assert sample_configurations("product", REPRO_PACKETS, x, 1, []).shape == (0, 3)
