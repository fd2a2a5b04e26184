"""Shot noise of an open run: the Fano factor of the transmitted counts, and what theory expects.

**What is counted.** The injection model attempts one injection into every energy cell of each
reservoir per attempt period t0 = h/dE (``devices.injection``), at ``phase + n t0`` with a phase per
cell drawn by each world. So the period [k t0, (k + 1) t0) holds exactly one attempt per cell, in every
world. For every electron the run records its period k and its fate (the side it left by). Per world
and period the net transmitted count is

    N_wk = (left-injected electrons that left on the right) - (right-injected that left on the left),

and the Fano factor is F = Var(N) / <N>, over all (world, period) samples of the periods that are
counted. Periods are counted when they end at least ``DECISION_MARGIN`` times the estimated time to
steady state (the longest classical passage of a cell, ``engine.steady_state_time``) before t_end, so
that their electrons have left when the run stops; the rule depends on the run's times only, never on
the outcomes. Electrons of a counted period still in the device at t_end, or removed for a non-finite
velocity, are reported (``undecided``) and make the run warn: their fates are missing from the counts.
The standard error of F is the jackknife over the independent worlds (delete one world at a time).

Counting by injection period, rather than the exits in a time window, removes the noise of the
window's edges (electrons half-way through when the window opens or closes) and of a random number of
attempts per window: what is left is the partition noise of the electrons' fates.

**What the model expects.** An electron of cell j of side s is accepted with probability f_sj and,
for non-interacting electrons, transmitted with probability p_sj, the transmitted part of its packet
(``injection.packet_transmission``): its Bohmian position, drawn from |psi|^2, decides its fate. The
electrons are independent, so N_wk is a sum of independent Bernoulli variables (sign -1 for the right
side) and

    F_model = sum_sj f_sj p_sj (1 - f_sj p_sj) / (sum_j f_Lj p_Lj - sum_j f_Rj p_Rj).

**What quantum mechanics says.** For a two-terminal conductor of transmission T(E) the zero-frequency
noise of non-interacting fermions (M. Buettiker, Phys. Rev. B 46, 12485 (1992); Ya. M. Blanter and M.
Buettiker, Phys. Rep. 336, 1 (2000), two-terminal formula) gives

    F = int { T [f_L (1 - f_L) + f_R (1 - f_R)] + T (1 - T) (f_L - f_R)^2 } dE / int T (f_L - f_R) dE,

which at zero temperature is G. B. Lesovik's (JETP Lett. 49, 592 (1989)) sum T(1 - T) / sum T over the
bias window [mu_R, mu_L]. Here every f_s is restricted to the energies the run injects (its cells'
range above its band bottom), as ``window_current`` is. The two agree when only one reservoir feeds
the transmitted energies and f is 0 or 1 (zero temperature and a bias above E_F: the right lead's
electrons lie below the left band bottom and are all reflected), up to the packets' energy spread
(p_sj is T averaged over the packet: p (1 - p) >= <T (1 - T)>). Where both reservoirs inject at the
same energy (bias below E_F) the model, without exchange between the electrons, adds the partition
noise of both, which the antisymmetry of the many-electron state suppresses: F_model > F there
(docs/devices.md). The model's thermal acceptance noise differs from the quantum thermal term too.
"""

from __future__ import annotations

import numpy as np

from .injection import LEFT, RIGHT

__all__ = ["DECISION_MARGIN", "counted_periods", "fano_factor", "fano_model", "fano_quantum"]

#: Counted periods end at least this many estimated steady-state times before t_end.
DECISION_MARGIN = 3.0


def counted_periods(period: float, t_end: float, decision_time: float) -> int:
    """Number K of attempt periods [k t0, (k + 1) t0), k < K, that end by t_end - margin."""
    return max(0, int(np.floor((t_end - DECISION_MARGIN * decision_time) / period + 1e-9)))


def fano_factor(counts: np.ndarray) -> tuple[float, float]:
    """F = Var(N) / <N> over every sample of ``counts`` (n_worlds, n_periods), and its jackknife
    standard error over the worlds (NaN when there are fewer than 2 worlds or <N> = 0)."""
    n = np.asarray(counts, dtype=float)
    if n.ndim != 2 or n.size < 2 or n.shape[0] < 2:
        return float("nan"), float("nan")

    def f_of(s1: np.ndarray, s2: np.ndarray, m: np.ndarray) -> np.ndarray:
        mean = s1 / m
        var = (s2 - m * mean**2) / (m - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return var / mean

    per1, per2 = n.sum(axis=1), (n**2).sum(axis=1)
    s1, s2, m = per1.sum(), per2.sum(), float(n.size)
    full = float(f_of(np.array(s1), np.array(s2), np.array(m)))
    w = n.shape[0]
    loo = f_of(s1 - per1, s2 - per2, np.full(w, m - n.shape[1]))
    se = float(np.sqrt((w - 1) / w * np.sum((loo - loo.mean()) ** 2)))
    return full, se


def fano_model(injection, p_left: np.ndarray, p_right: np.ndarray) -> float:
    """F_model of the independent-electron injection model (module Notes), from the packet
    transmissions p_sj of each side's cells."""
    num, mean = 0.0, 0.0
    for side, p, sign in ((LEFT, p_left, 1.0), (RIGHT, p_right, -1.0)):
        q = injection.occupations(side) * np.asarray(p, dtype=float)
        num += float(np.sum(q * (1.0 - q)))
        mean += sign * float(np.sum(q))
    return num / mean if mean != 0.0 else float("nan")


def fano_quantum(transmission_of, energies: np.ndarray, f_left: np.ndarray,
                 f_right: np.ndarray) -> float:
    """The two-terminal Fano factor of non-interacting fermions (module Notes) on an energy grid,
    with the occupations ``f_left``, ``f_right`` given on it (already restricted to the injected
    energies)."""
    e = np.asarray(energies, dtype=float)
    t = np.asarray(transmission_of(e), dtype=float)
    fl, fr = np.asarray(f_left, dtype=float), np.asarray(f_right, dtype=float)
    noise = t * (fl * (1 - fl) + fr * (1 - fr)) + t * (1 - t) * (fl - fr) ** 2
    current = np.trapezoid(t * (fl - fr), e)
    return float(np.trapezoid(noise, e) / current) if current != 0.0 else float("nan")
