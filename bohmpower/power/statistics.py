"""Agreement statistics between two estimates with standard errors (SPEC.md "Standard errors").

A comparison of K points is summarised by the z-scores z_i = (a_i - b_i) / sqrt(se_a_i^2 + se_b_i^2):

- the RMS of z, accepted while RMS^2 <= chi2_K(1 - alpha) / K (for independent z ~ N(0, 1),
  K RMS^2 is chi-square with K degrees of freedom);
- the largest |z|, accepted while it is below the Bonferroni bound Phi^{-1}(1 - alpha / (2K)), which
  holds whatever the correlations between the points.

Every agreement test in the suite and the ``compare`` command use these two bounds, never a fixed
"4 sigma". Points whose combined standard error is zero (a deterministic quantity on both sides) are
compared on an absolute scale by the caller, not here.

Estimates at different times come from the same worlds, so their z-scores are correlated and the
chi-square RMS bound for independent points would be too tight. When the correlation matrix C of the
z-scores is known (estimated from the means of the fixed blocks of worlds, ``block_correlation``),
K RMS^2 = z^T z is approximated by a chi-square of matching mean and variance (Satterthwaite):
z^T z ~ a chi2_nu with a = tr(C^2)/K and nu = K^2/tr(C^2), and the RMS bound becomes
sqrt(a chi2_nu(1 - alpha) / K). Independent points (C = 1) recover the plain bound. The Bonferroni
bound needs no correction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Family-wise false-alarm probability of a comparison.
DEFAULT_ALPHA = 1e-3


@dataclass(frozen=True)
class Agreement:
    """Summary of a set of z-scores against the RMS and Bonferroni bounds."""

    n_points: int
    rms_z: float
    max_abs_z: float
    rms_bound: float
    max_bound: float
    alpha: float

    @property
    def ok(self) -> bool:
        return self.n_points == 0 or (
            self.rms_z <= self.rms_bound and self.max_abs_z <= self.max_bound
        )

    def __str__(self) -> str:
        verdict = "agree" if self.ok else "DISAGREE"
        return (
            f"{verdict}: {self.n_points} points, RMS z = {self.rms_z:.2f} (bound "
            f"{self.rms_bound:.2f}), max |z| = {self.max_abs_z:.2f} (Bonferroni bound "
            f"{self.max_bound:.2f}, alpha = {self.alpha:g})"
        )


def z_scores(a, b, se_a=None, se_b=None) -> np.ndarray:
    """(a - b) / sqrt(se_a^2 + se_b^2); NaN where the combined standard error is zero."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    var = np.zeros(np.broadcast(a, b).shape)
    for se in (se_a, se_b):
        if se is not None:
            var = var + np.asarray(se, dtype=float) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var > 0, (a - b) / np.sqrt(var), np.nan)


def rms_bound(n_points: int, alpha: float = DEFAULT_ALPHA, correlation=None) -> float:
    """Upper bound on the RMS of n standard normal z-scores at level alpha.

    ``correlation`` is their (n, n) correlation matrix; None means independent.
    """
    if correlation is None:
        return float(np.sqrt(stats.chi2.ppf(1 - alpha, n_points) / n_points))
    c = np.asarray(correlation, dtype=float)
    tr2 = float(np.sum(c * c))
    a = tr2 / n_points
    nu = n_points**2 / tr2
    return float(np.sqrt(a * stats.chi2.ppf(1 - alpha, nu) / n_points))


def block_correlation(block_values) -> np.ndarray:
    """Correlation matrix of K estimates from their values in B independent blocks, shape (B, K).

    Entries with no spread across blocks get unit self-correlation and no cross-correlation. With
    few blocks the estimate of tr(C^2) is biased upwards (noise adds ~K^2/B), which only makes the
    RMS bound more conservative.
    """
    v = np.asarray(block_values, dtype=float)
    if v.ndim != 2 or v.shape[0] < 3:
        raise ValueError("need values of at least 3 blocks, shape (B, K)")
    d = v - v.mean(axis=0)
    cov = d.T @ d / (v.shape[0] - 1)
    sd = np.sqrt(np.diag(cov))
    ok = sd > 0
    c = np.eye(v.shape[1])
    c[np.ix_(ok, ok)] = cov[np.ix_(ok, ok)] / np.outer(sd[ok], sd[ok])
    return c


def bonferroni_bound(n_points: int, alpha: float = DEFAULT_ALPHA) -> float:
    """|z| bound that n points exceed with family-wise probability at most alpha."""
    return float(stats.norm.isf(alpha / (2 * n_points)))


def agreement(z, alpha: float = DEFAULT_ALPHA, correlation=None) -> Agreement:
    """Summarise z-scores (NaN entries are ignored) against both bounds.

    ``correlation``: correlation matrix of the entries of ``z``, either of all of them (the rows of
    NaN entries are dropped here) or of the finite ones only; None for independent points.
    """
    z = np.asarray(z, dtype=float).ravel()
    finite = np.isfinite(z)
    if correlation is not None and np.shape(correlation)[0] == z.size:
        correlation = np.asarray(correlation)[np.ix_(finite, finite)]
    z = z[finite]
    n = z.size
    if n == 0:
        return Agreement(0, 0.0, 0.0, np.inf, np.inf, alpha)
    return Agreement(
        n_points=n,
        rms_z=float(np.sqrt(np.mean(z**2))),
        max_abs_z=float(np.max(np.abs(z))),
        rms_bound=rms_bound(n, alpha, correlation),
        max_bound=bonferroni_bound(n, alpha),
        alpha=alpha,
    )
