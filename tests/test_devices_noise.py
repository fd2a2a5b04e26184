"""Shot noise of an open run (bohmpower.devices.noise): the Fano factor of the transmitted counts."""

import importlib.util

import numpy as np
import pytest

from bohmpower.devices.engine import OpenSolver
from bohmpower.devices.injection import LEFT, RIGHT
from bohmpower.devices.noise import fano_factor, fano_model, fano_quantum
from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("shot_noise_check",
                                               REPO / "scripts" / "shot_noise_check.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)


@pytest.mark.parametrize("p, n", [(0.3, 10), (0.8, 4)])
def test_fano_factor_of_binomial_counts_and_its_jackknife_error(p, n):
    # N ~ Binomial(n, p): F = 1 - p exactly; 400 worlds x 3 periods
    rng = np.random.default_rng(5)
    z = []
    for _ in range(40):
        counts = rng.binomial(n, p, size=(400, 3))
        f, se = fano_factor(counts)
        z.append((f - (1 - p)) / se)
        # the jackknife error is the spread of F over repetitions: about (1 - p) sqrt(2 / 1200)
        assert 0.5 < se / ((1 - p) * np.sqrt(2.0 / 1200)) < 2.0
    z = np.asarray(z)
    assert abs(z.mean()) < 4 / np.sqrt(z.size) + 0.1
    assert 0.6 < z.std() < 1.5  # calibrated error bars
    # Poisson counts: F = 1
    f, se = fano_factor(rng.poisson(2.0, size=(2000, 2)))
    assert abs(f - 1.0) < 4 * se


def test_references_reduce_to_the_textbook_limits():
    # constant T at zero temperature in a bias window: F = 1 - T (Lesovik); no current -> NaN
    e = np.linspace(0.0, 1.0, 2001)
    fl = (e < 0.6).astype(float)
    fr = (e < 0.2).astype(float)
    assert fano_quantum(lambda x: np.full_like(x, 0.3), e, fl, fr) == pytest.approx(0.7, rel=2e-3)
    assert np.isnan(fano_quantum(lambda x: np.full_like(x, 0.3), e, fl, fl))

    class Two:
        def occupations(self, side):
            return np.array([1.0, 1.0, 0.5]) if side == LEFT else np.zeros(3)

    # independent Bernoulli fates with probabilities f p: sum fp(1 - fp) / sum fp
    q = np.array([0.2, 0.6, 0.25])
    assert fano_model(Two(), np.array([0.2, 0.6, 0.5]), np.zeros(3)) == pytest.approx(
        np.sum(q * (1 - q)) / np.sum(q))


def test_transmitted_counts_have_the_partition_noise_of_the_packets():
    """Zero temperature, a bias above E_F: only the left reservoir feeds the transmitted energies.
    Every attempt period holds one attempt per cell; the Fano factor of the transmitted counts is
    the binomial partition noise sum p (1 - p) / sum p of the packets, well below Poisson's 1, and
    close to Lesovik's sum T (1 - T) / sum T."""
    result = OpenSolver(check.noise_config(0.06, 128)).run()
    n = result.noise()
    k = n["periods"]
    assert k == 3 and n["samples"] == 3 * 128
    # bookkeeping: every world holds exactly one electron per cell and reservoir in a counted
    # period (f = 1 at 0 K for every cell), decided or not
    per = result.fates[:, :k].sum(axis=(2, 4)) + result.undecided[:, :k]  # (world, period, origin)
    np.testing.assert_array_equal(per, result.injection.n_cells)
    # the mean count per period against the injection model's expectation
    counts = (result.fates[:, :k, :, LEFT, RIGHT].sum(axis=2)
              - result.fates[:, :k, :, RIGHT, LEFT].sum(axis=2))
    se_mean = counts.std(ddof=1) / np.sqrt(counts.size)
    assert abs(n["mean_count"] - n["mean_count_model"]) < 4 * se_mean
    # the Fano factor against the model, sub-Poissonian by many error bars
    assert abs(n["z"]) < 4.0, n
    assert n["fano"] < 1.0 - 6 * n["fano_stderr"]
    assert abs(n["fano"] - n["fano_quantum"]) < 4 * n["fano_stderr"] + abs(
        n["fano_model"] - n["fano_quantum"])
    # in this regime the model and the two-terminal formula differ only by the packets' smearing
    assert abs(n["fano_model"] - n["fano_quantum"]) < 0.05
    # the undecided electrons cannot move F by its error bar: no warning
    assert abs(n["fano_if_transmitted"] - n["fano"]) < n["fano_stderr"]
    assert not any("Fano factor" in w for w in result.warnings)


def test_below_e_f_the_model_without_exchange_overestimates_the_noise():
    # both reservoirs inject at the same energies: the independent-electron model adds the
    # partition noise of both (F > 1 for the net count); the antisymmetric state suppresses it
    ref = OpenSolver(check.noise_config(0.02, 8)).reference
    assert ref["fano_model"] > 1.0
    assert ref["fano_quantum"] < 0.6
    assert ref["packet_transmission"][RIGHT].max() > 0.3
