"""Quadrature rules on step times for the window averages of the exact solver's grid observables.

A window [t_s, t_s + T] holds ``window_steps`` = W steps of length dt. The grid observables are smooth in
time (their frequencies are energy differences of the state, bounded by the phase per step over dt), so
their window averages need them at a few of the step times only:

- ``"newton_cotes"`` (default): the window is cut into panels of 4 to 7 intervals, each with evenly
  spaced nodes h <= stride steps apart, using the fewest nodes (:func:`_uniform_panels`: about
  W / stride evaluations per window); each panel is integrated by its closed Newton-Cotes rule
  (Boole's for 4 intervals: exact for degree 5, error O(h^7 f^(6)) per panel; 5, 6 and 7 intervals:
  exact for degree 5, 7 and 7; every weight positive).
- ``"every_step"``: every step is a node; panels of 4 to 7 steps, each integrated by its closed
  Newton-Cotes rule (Boole's for 4 steps), so the every-step rule has the same order with h = dt.

The exact run uses two spacings (``bohmpower.driver.ExactWindows``): the full observables every
``numerics.window_node_phase`` of phase, the sharp volumes' edge terms (ratios by rho, which change
faster) every ``numerics.edge_node_phase``, from ``observables.edge_terms`` in between.

Error estimate per window: on each panel the difference between the rule and the embedded 3-node rule
(Simpson's, the panel's two ends and its middle node), summed over the panels and divided by T. It
estimates the error of the lower-order rule, so it bounds the error of the rule used (by a factor
~ (h omega)^-2 on a resolved signal): an upper estimate, not a correction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["WindowRule", "node_stride", "window_rule"]

#: Default largest phase (packet energy range times node spacing, rad) between two quadrature nodes.
DEFAULT_NODE_PHASE = 0.4


@dataclass(frozen=True)
class WindowRule:
    """Nodes and weights of one window, in steps relative to the window's start.

    Attributes
    ----------
    steps : (n_nodes,) int
        Node steps 0 = steps[0] < ... < steps[-1] = W.
    weights : (n_nodes,) float
        Weights of the window *average*: avg f = sum_i weights[i] f(t_s + steps[i] dt); they sum to 1.
    panels : list of (n_i,) int index arrays into ``steps`` (each panel's nodes, ends shared).
    panel_weights, embedded_weights : lists of (n_i,) float
        Per panel, the rule's weights and the embedded 3-node rule's weights (both for the average over
        the whole window), whose difference gives the error estimate.
    """

    steps: np.ndarray
    weights: np.ndarray
    panels: list
    panel_weights: list
    embedded_weights: list

    def average(self, values: np.ndarray) -> float:
        """sum_i weights[i] values[i] (values at the node steps, in order)."""
        return float(np.dot(self.weights, values))

    def error_estimate(self, values: np.ndarray) -> float:
        """sum over panels of |rule - embedded rule| (same units as the average)."""
        v = np.asarray(values, dtype=float)
        return float(sum(abs(np.dot(w - e, v[p]))
                         for p, w, e in zip(self.panels, self.panel_weights, self.embedded_weights)))


def _interpolatory_weights(nodes: np.ndarray, a: float, b: float) -> np.ndarray:
    """Weights w with sum_i w_i p(x_i) = int_a^b p dx for every polynomial of degree < len(nodes)."""
    c = 0.5 * (a + b)
    h = 0.5 * (b - a)
    y = (np.asarray(nodes, dtype=float) - c) / h  # in [-1, 1]: a well-conditioned Vandermonde
    n = y.shape[0]
    j = np.arange(n)
    moments = np.where(j % 2 == 0, 2.0 / (j + 1), 0.0)
    vander = y[None, :] ** j[:, None]
    return np.linalg.solve(vander, moments) * h


def _uniform_panels(w_steps: int, stride: int) -> list[tuple[int, int]]:
    """The window as panels (intervals p, spacing h): p in 4..7, h <= stride, sum p h = W, with the
    fewest intervals (evaluations), then the fewest odd panels; a window shorter than 4 steps is one
    panel of every step. Each panel's nodes are evenly spaced, so its rule is the closed Newton-Cotes
    rule of p + 1 points (positive weights for p <= 7)."""
    if w_steps < 4:
        return [(w_steps, 1)]
    # cost[L] = (intervals, odd panels) of the best cover of L steps; choice[L] = its last panel
    big = (1 << 30, 0)
    cost = [(0, 0)] + [big] * w_steps
    choice: list[tuple[int, int] | None] = [None] * (w_steps + 1)
    # a spacing above W / 4 leaves no 4-interval panel: the phase can allow any stride (a slow
    # state), the window bounds it
    # (the widest four spacings and the three narrowest, which fill any remainder: W x 28 work)
    h_max = max(1, min(stride, w_steps // 4))
    spacings = sorted(set(range(max(1, h_max - 3), h_max + 1)) | {h for h in (1, 2, 3) if h <= h_max})
    options = [(p, h) for h in spacings for p in (4, 5, 6, 7)]
    for length in range(4, w_steps + 1):
        for p, h in options:
            rest = length - p * h
            if rest < 0 or cost[rest] == big:
                continue
            c = (cost[rest][0] + p, cost[rest][1] + p % 2)
            if c < cost[length]:
                cost[length], choice[length] = c, (p, h)
    out, length = [], w_steps
    while length:
        p, h = choice[length]
        out.append((p, h))
        length -= p * h
    return sorted(out, key=lambda ph: -ph[1])  # widest spacing first (any order is valid)


def _split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` whole numbers differing by at most one."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def window_rule(window_steps: int, rule: str = "newton_cotes", stride: int = 1) -> WindowRule:
    """The quadrature of one window of ``window_steps`` steps.

    Parameters
    ----------
    window_steps : int
        W >= 1.
    rule : {"newton_cotes", "every_step"}
    stride : int
        Target node spacing in steps for "newton_cotes" (ignored by "every_step").
    """
    w_steps = int(window_steps)
    if w_steps < 1:
        raise ValueError(f"window_steps must be >= 1, got {window_steps}")
    if rule == "every_step":
        n_panels = max(1, w_steps // 4)
        lengths = _split(w_steps, n_panels)  # panels of 4..7 steps (or W < 4: one panel)
        per_panel = [np.arange(n + 1) for n in lengths]
    elif rule == "newton_cotes":
        panels = _uniform_panels(w_steps, max(1, int(stride)))
        lengths = [p * h for p, h in panels]
        per_panel = [h * np.arange(p + 1) for p, h in panels]
    else:
        raise ValueError(f"unknown window quadrature {rule!r}")
    steps: list[int] = [0]
    panels, pw, ew = [], [], []
    start = 0
    for n, local in zip(lengths, per_panel):
        idx0 = len(steps) - 1
        steps.extend(int(start + s) for s in local[1:])
        idx = np.arange(idx0, idx0 + local.shape[0])
        x = local.astype(float)
        w = _interpolatory_weights(x, 0.0, float(n)) / w_steps
        e = np.zeros_like(w)
        if local.shape[0] >= 3:
            mid = int(np.argmin(np.abs(x - 0.5 * n)))
            sub = np.array([0, mid, local.shape[0] - 1])
            e[sub] = _interpolatory_weights(x[sub], 0.0, float(n)) / w_steps
        else:
            e[:] = w
        panels.append(idx)
        pw.append(w)
        ew.append(e)
        start += n
    steps_arr = np.array(steps, dtype=np.int64)
    weights = np.zeros(steps_arr.shape[0])
    for idx, w in zip(panels, pw):
        weights[idx] += w
    return WindowRule(steps_arr, weights, panels, pw, ew)


def node_stride(phase_per_step: float, node_phase: float = DEFAULT_NODE_PHASE) -> int:
    """Node spacing in steps: the largest s with s * phase_per_step <= node_phase (at least 1).

    ``phase_per_step`` is dt times the state's energy range (``model.resolution.phase``); the grid
    observables oscillate at most at that range over hbar, so ``node_phase`` is the phase of their
    fastest component between two nodes.
    """
    if not phase_per_step > 0:
        return 1
    return max(1, int(math.floor(node_phase / phase_per_step + 1e-9)))
