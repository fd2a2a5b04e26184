"""Is an open run in steady state? Two tests on N(t), the number of electrons in a world.

The device fills from empty, so N(t) rises and then, in steady state, fluctuates about a constant.
Both tests read N at the stored frames of every world (``OpenResult.electrons``):

- **Drift over the averaging window** (``window_drift``): a straight line fitted to each world's N(t)
  on the frames in [warm_up, t_end]; the slope times the averaging time, relative to the mean N, is
  the fraction by which N still changes during the averages, with its standard error over the
  independent worlds. A z-score beyond ``DRIFT_Z`` says the averages still hold part of the
  transient (the electrons still arriving bring their energy: P_Omega > 0).
- **Where the transient ends** (``mser_truncation``): the MSER-m rule of White (Simulation 69, 323
  (1997); K. P. White, M. J. Cobb, S. C. Spratt, Proc. Winter Simulation Conf. 2000, 755) applied to the
  world-averaged N(t): the truncation d (in batches of m frames) that minimises the squared standard
  error of the mean of what is left, sum_{i > d} (b_i - mean)^2 / (n - d)^2, searched over the first
  half of the run. A minimum at that limit means the series has not settled in the first half: no
  steady-state time is detected.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DRIFT_Z", "mser_truncation", "steady_state_tests", "window_drift"]

#: |z| of the drift of N over the averaging window above which a run warns.
DRIFT_Z = 3.0


def mser_truncation(series: np.ndarray, batch: int = 5) -> int | None:
    """MSER-``batch``: the index of the first sample of the steady part of ``series``, or None when
    the rule's minimum sits at its search limit (half the series: not settled) or the series is
    too short (fewer than 4 batches)."""
    y = np.asarray(series, dtype=float)
    n = y.size // int(batch)
    if n < 4 or not np.all(np.isfinite(y)):
        return None
    b = y[: n * batch].reshape(n, batch).mean(axis=1)
    limit = n // 2
    stats = []
    for d in range(limit + 1):
        tail = b[d:]
        stats.append(float(np.sum((tail - tail.mean()) ** 2)) / tail.size ** 2)
    d = int(np.argmin(stats))
    return None if d >= limit else d * int(batch)


def window_drift(times: np.ndarray, electrons: np.ndarray, warm_up: float) -> dict:
    """Relative change of N over the averaging window [warm_up, times[-1]].

    Parameters
    ----------
    times : ndarray (F,)
        Frame times.
    electrons : ndarray (F, W)
        N of each world at each frame.
    warm_up : float

    Returns
    -------
    dict: ``relative`` (slope x averaging time / mean N, the world mean), ``stderr`` (over the
    worlds; NaN with one world), ``z`` (relative / stderr), ``frames`` (how many were fitted).
    """
    t = np.asarray(times, dtype=float)
    n = np.asarray(electrons, dtype=float)
    inside = t >= warm_up - 1e-9 * max(abs(warm_up), 1.0)
    if inside.sum() < 3:
        return {"relative": float("nan"), "stderr": float("nan"), "z": float("nan"),
                "frames": int(inside.sum())}
    tw, nw = t[inside], n[inside]
    tc = tw - tw.mean()
    slopes = (tc @ (nw - nw.mean(axis=0))) / float(tc @ tc)  # (W,)
    mean_n = float(nw.mean())
    span = float(tw[-1] - tw[0])
    rel = slopes * span / mean_n if mean_n > 0 else np.full(slopes.shape, np.nan)
    w = rel.size
    value = float(rel.mean())
    se = float(rel.std(ddof=1) / np.sqrt(w)) if w > 1 else float("nan")
    z = value / se if se > 0 else float("nan")
    return {"relative": value, "stderr": se, "z": z, "frames": int(inside.sum())}


def steady_state_tests(times, electrons, warm_up: float, us) -> tuple[dict, float, list]:
    """The two steady-state tests of ``devices.steady`` on N(t) (frames x worlds): the drift of N
    over the averaging window and the end of its transient; returns them and the warnings they
    call for (times in atomic units, ``us`` for the messages)."""
    drift = window_drift(times, electrons, warm_up)
    mean_n = np.asarray(electrons, dtype=float).mean(axis=1)
    batch = int(max(1, min(5, mean_n.size // 20)))
    idx = mser_truncation(mean_n, batch)
    detected = float("nan") if idx is None else float(times[idx])
    notes = []
    if np.isfinite(drift["z"]) and abs(drift["z"]) > DRIFT_Z:
        notes.append(
            f"not in steady state: the number of electrons in a world still changes by "
            f"{drift['relative']:+.1%} +- {drift['stderr']:.1%} over the averaging window "
            f"(z = {drift['z']:+.1f}; steady state means 0), so the averages hold part of the "
            "transient (P_Omega > 0 while the device fills); lengthen steady_state.warm_up and "
            "time.t_end"
            + ("" if idx is not None else "; N(t) has not settled in the first half of the run "
               "(MSER)"))
    if idx is not None and detected > warm_up * (1 + 1e-9):
        notes.append(
            f"the transient of N(t) ends at about {us.quantity(detected, 'time')} (MSER), after "
            f"steady_state.warm_up = {us.quantity(warm_up, 'time')}: set warm_up >= that")
    return drift, detected, notes
