"""Ensemble estimators: trajectories -> E_Omega(t), P_Omega and its terms, with standard errors.

One module turns Bohmian worlds (exact trajectories now, conditional-wavefunction worlds later) into the
volume and field estimates of THEORY.md sections 2, 3, 5 (item 7) and 6. It never sees a wavefunction:
the caller hands it, at every step, what each world's electrons carry.

Design
------
**Blocks are the unit of accumulation.** Worlds (samples) are processed in fixed blocks of sample ids::

    est = EnsembleEstimator(volumes, dt, n_steps, frame_steps, window_steps, grid_x=x)
    for ids in blocks:                       # the run fixes the block size, never the rank count
        est.begin_block(ids)
        for n in range(n_steps + 1):         # every step, t_n = n dt
            est.record(n, X, v, e, field_power, pair_power, weight, gamma_total)
        sums = est.end_block()               # BlockSums: this block's means and M2, nothing else
        est.merge(sums)                      # in block order (on rank 0 after a gather, with MPI)
    out = est.results()

``end_block`` does not merge: with MPI each rank processes its own blocks, the ``BlockSums`` (small,
picklable) are gathered to rank 0 and merged there in increasing sample-id order, which ``merge``
enforces. Since the per-world values of a world do not depend on which other worlds share its block, and
the blocks and their merge order are fixed by the run, the result is the same (bit for bit) for any number
of ranks and for a resumed run, provided the block size is a property of the run (for example a constant,
or a key of the run file), not derived from the number of processes. Changing the block size changes
the results only at round-off level (tested to 1e-12 relative).

**Memory does not grow with the number of samples.** During a block the estimator keeps, per world, the
previous step's values, the running integrals of the current window, E_Omega and the energy-density profile
at the window start; per block, the block statistics of every frame and window slot; after merging, one
set of running statistics.

**Statistics.** The independent unit is the world, never the electron. Every estimate is a mean over all M
worlds of a per-world value y_i = w_i f_i (the world's weight times its value; removed worlds give 0 and
still count in M, THEORY.md section 6), so the mean is (1/M) sum_i y_i (divided by the number of worlds,
not by the sum of weights) and the standard error is std(y, ddof=1) / sqrt(M). Within a block, the mean
and the centred sum of squares M2 are formed by two passes over the block's worlds (exact to round-off),
and blocks are combined by Chan's pairwise update

    n = n_a + n_b,  d = mean_b - mean_a,  mean = mean_a + d n_b / n,  M2 = M2_a + M2_b + d^2 n_a n_b / n,

which, unlike sums of y and y^2, does not cancel catastrophically when the mean is large compared with
the spread, and is deterministic when the blocks are merged in a fixed order.

**Frames** (steps 0, frame_steps, 2 frame_steps, ..., and n_steps): per volume, the instantaneous

    particles      = < sum_k Theta(X_k) >
    energy         = < sum_k Theta(X_k) e_k >                       (E_Omega)
    field_work     = < sum_k Theta(X_k) f_k >                       (f_k = q E(X_k) v_k; chi = 1: q d_t phi)
    interaction    = < sum_k Theta(X_k) c_k >                       (c_k = (1/2) sum_{j!=k} F_kj (v_k + v_j))
    absorbed       = (2/hbar) < sum_k Theta(X_k) e_k Gamma_tot >
    boundary_flux  = < sum_k Theta'(X_k) v_k e_k >                  (smooth volumes only)
    particle_flux  = < sum_k Theta'(X_k) v_k >                      (smooth volumes only)

where < . > is the weighted world average above. For a sharp volume the instantaneous fluxes are sums of
delta functions and are not reported; only their window averages are.

**Windows** [t_s, t_s + T], T = window_steps dt, t_s = 0, T, 2T, ... (a last partial window is dropped):
per world i, with y the weighted integrands (w e_k, w f_k, ...),

    power          = (w E_i(t_s + T) - w E_i(t_s)) / T              (the exact window average of dE/dt)
    field_work     = (1/T) int Theta w f dt,   interaction = (1/T) int Theta w c dt,
    absorbed       = (1/T) int (2/hbar) Theta w e Gamma_tot dt  (+ the energy in Omega of a world removed
                     in the window, see below)
    boundary_flux  = sharp: (1/T) sum over crossings of (+w e_k entering, -w e_k leaving) at the crossing;
                     smooth: (1/T) int Theta' v w e dt
    particle_flux  = the same with w in place of w e
    quantum        = power - field_work - interaction - boundary_flux + absorbed

The time integrals use the trapezoid rule on the steps (second order in dt). For a sharp volume a step in
which an electron crosses an edge is split at the crossing: the crossing fraction tau of the step is found
by linear interpolation of X_k, the integrands are linear in time across the step, so
int_0^1 H(s) g(s) ds = h_0 G(tau) + h_1 (G(1) - G(tau)) with G(tau) = g_0 tau + (g_1 - g_0) tau^2 / 2,
and the crossing energy is w e_k interpolated linearly at tau. Both errors are O(dt^2) per crossing, and
the first-order errors of tau cancel between the boundary flux and the field work. The sharp Theta is
H(x - a) - H(x - b) with H(0) = 1/2 (the s -> 0 limit of the tanh window), so an electron landing exactly
on an edge counts two half crossings. The quantum term is built per world as the change of the world's
E_Omega minus the regular terms (THEORY.md section 5 item 7): near nodes e_k and the quantum force are
large, but their window integral is the bounded change of e_k, so the per-world quantum value stays finite.
For classical particles (no quantum potential) it is zero to O(dt^2), which the tests check.

**Removed worlds** (absorbing layers): a world whose weight is 0 at step n contributes 0 from then on
(its positions may be NaN). Its removal is treated as happening at the start of the step in which the
weight first reads 0: that step contributes no integrals and no crossings, and the world's remaining
energy in Omega, w E_Omega at the previous step, is booked as ``absorbed`` (energy taken out by the
layers), so that the quantum term of such a world stays free of the removal jump. A removed world must
stay removed.

**Profiles** on ``grid_x`` at frames: density n(x) = < sum_k K_h(x - X_k) >, current
J(x) = < sum_k v_k K_h(x - X_k) >, energy density eps(x) = < sum_k e_k K_h(x - X_k) >, each from per-world
contributions, so each has a standard error; and the window-averaged power density
p(x) = < (eps_i(x, t_s + T) - eps_i(x, t_s)) / T >, stored as ``window/power_density``. K_h is a
Gaussian kernel of standard deviation h (``profile_bandwidth``). The bandwidth is fixed for the whole run
(the same at every frame, for every block): a rule computed from the frame's sample (Silverman's) would
need all worlds at once, and one computed per block would make the answer depend on the block size. The
caller chooses h (``silverman_bandwidth`` gives Silverman's rule from an expected spread and sample count);
the default is h = 2 dx, the narrowest Gaussian whose grid sum is 1 to round-off
(Poisson summation: relative error exp(-2 pi^2 h^2 / dx^2) = exp(-79)), so the profiles integrate to the
particle numbers. The kernel is not wrapped around periodic cells.

**Cost.** ``record`` is numpy vectorised over the block's worlds and all volumes at once (electron-major
internal layout; crossings visited sparsely, only where an electron changed side of an edge). It has a
fixed overhead of a few tens of microseconds per call (about 50 small numpy operations), so blocks of
64 worlds or more keep it well below a trajectory step: measured on the 2-core development machine under
load, 0.15-0.8 us per world-step for N = 2 and blocks of 64-1024 worlds with one to three volumes; frames
with profiles cost n_x Gaussians per electron and world.

**Not handled.** Positions are taken as continuous (unwrapped) coordinates: on a periodic cell a
trajectory wrapped back into [x_min, x_max) would show a spurious jump across the cell, and volumes are not
periodised. The kernel estimates are not wrapped either.

Everything is in atomic units (hbar = 1).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bohmpower.errors import ConfigError

__all__ = ["BlockSums", "EnsembleEstimator", "silverman_bandwidth"]

log = logging.getLogger(__name__)

HBAR = 1.0

#: Instantaneous per-volume quantities at frames (sharp volumes: the first five).
FRAME_QUANTITIES = ("particles", "energy", "field_work", "interaction", "absorbed")
SMOOTH_FRAME_QUANTITIES = ("boundary_flux", "particle_flux")
#: Window averages per volume.
WINDOW_QUANTITIES = (
    "power",
    "field_work",
    "interaction",
    "boundary_flux",
    "absorbed",
    "quantum",
    "particle_flux",
)
PROFILE_QUANTITIES = ("density", "current", "energy_density")


def silverman_bandwidth(spread: float, n_samples: int) -> float:
    """Silverman's rule of thumb for a Gaussian kernel, h = 0.9 sigma M^(-1/5).

    Parameters
    ----------
    spread : float
        Standard deviation of the positions [bohr] (e.g. of the initial packets).
    n_samples : int
        Number of worlds M the run will accumulate.

    Returns
    -------
    float
        Kernel standard deviation h [bohr].
    """
    if spread <= 0 or n_samples < 1:
        raise ValueError("spread must be > 0 and n_samples >= 1")
    return 0.9 * float(spread) * float(n_samples) ** (-0.2)


@dataclass
class BlockSums:
    """Statistics of one block of worlds (or of several blocks merged in order).

    Attributes
    ----------
    first_id, last_id : int
        Smallest and largest sample id included.
    n_samples : int
        Number of worlds M (removed worlds included).
    mean : dict str -> ndarray
        Mean over the worlds of each per-world quantity, per frame or window slot (and grid point).
    m2 : dict str -> ndarray
        Centred sum of squares sum_i (y_i - mean)^2, same shapes.
    """

    first_id: int
    last_id: int
    n_samples: int
    mean: dict = field(default_factory=dict)
    m2: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Flat dict of numpy arrays and ints (for checkpoints)."""
        out: dict[str, Any] = {
            "first_id": self.first_id,
            "last_id": self.last_id,
            "n_samples": self.n_samples,
        }
        for key, val in self.mean.items():
            out["mean/" + key] = val
            out["m2/" + key] = self.m2[key]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlockSums:
        """Inverse of :meth:`as_dict`."""
        mean = {k[5:]: np.asarray(v, dtype=float) for k, v in data.items() if k.startswith("mean/")}
        m2 = {k[3:]: np.asarray(v, dtype=float) for k, v in data.items() if k.startswith("m2/")}
        return cls(int(data["first_id"]), int(data["last_id"]), int(data["n_samples"]), mean, m2)

    def copy(self) -> BlockSums:
        return BlockSums(
            self.first_id,
            self.last_id,
            self.n_samples,
            {k: v.copy() for k, v in self.mean.items()},
            {k: v.copy() for k, v in self.m2.items()},
        )


class EnsembleEstimator:
    """Accumulates trajectory estimates of volumes, windows and profiles over blocks of worlds.

    Parameters
    ----------
    volumes : sequence of Volume
        ``bohmpower.model.volume.Volume`` (or any object with ``name``, ``x_min``, ``x_max``,
        ``smoothing`` [bohr]). Sharp (smoothing == 0): Theta = H(x - x_min) - H(x - x_max) with
        H(0) = 1/2; smooth: the tanh window, evaluated here for all volumes at once (the same
        function as ``Volume.theta``/``Volume.dtheta``, which the tests hold it against).
    dt : float
        Time step [atomic time]; step n is at t_n = n dt.
    n_steps : int
        Last step; ``record`` is called for n = 0 .. n_steps.
    frame_steps : int
        Steps between frames (frames at 0, frame_steps, ..., and n_steps).
    window_steps : int
        Window length in steps, T = window_steps dt; windows start at 0, T, 2T, ...; a last partial
        window is dropped.
    grid_x : ndarray, shape (n_x,), optional
        Points [bohr] for the profiles; None: no profiles.
    profile_bandwidth : float, optional
        Gaussian kernel standard deviation h [bohr]; default 2 (grid_x[1] - grid_x[0]).

    Notes
    -----
    The formulas and the bookkeeping are in the module docstring.
    """

    def __init__(
        self,
        volumes: Sequence[Any],
        dt: float,
        n_steps: int,
        frame_steps: int,
        window_steps: int,
        grid_x: np.ndarray | None = None,
        profile_bandwidth: float | None = None,
    ) -> None:
        if not dt > 0:
            raise ConfigError("time.dt", f"must be > 0 (got {dt})")
        if int(n_steps) != n_steps or n_steps < 0:
            raise ConfigError(
                "time.t_end", f"number of steps must be an integer >= 0 (got {n_steps})"
            )
        if int(frame_steps) != frame_steps or frame_steps < 1:
            raise ConfigError("time.save_every", f"must be an integer >= 1 (got {frame_steps})")
        if int(window_steps) != window_steps or window_steps < 1:
            raise ConfigError(
                "time.window",
                f"must be a positive whole number of steps (got {window_steps} steps)",
            )
        self.dt = float(dt)
        self.n_steps = int(n_steps)
        self.frame_steps = int(frame_steps)
        self.window_steps = int(window_steps)
        self.window = self.window_steps * self.dt

        frames = list(range(0, self.n_steps + 1, self.frame_steps))
        if frames[-1] != self.n_steps:
            frames.append(self.n_steps)
        self.frame_indices = np.array(frames, dtype=np.int64)
        self._frame_slot = {int(n): i for i, n in enumerate(frames)}
        self.n_frames = len(frames)
        self.n_windows = self.n_steps // self.window_steps
        self.time = self.frame_indices * self.dt
        self.window_t_start = np.arange(self.n_windows) * self.window

        self.volumes = list(volumes)
        names = [v.name for v in self.volumes]
        if len(set(names)) != len(names):
            raise ConfigError("volume", f"volume names must be unique (got {names})")
        self._sharp: list[int] = []
        self._smooth: list[int] = []
        edges: list[float] = []
        for i, vol in enumerate(self.volumes):
            if not float(vol.x_min) < float(vol.x_max):
                raise ConfigError(f"volume[{i}].x_max", "must be larger than x_min")
            if float(vol.smoothing) < 0:
                raise ConfigError(f"volume[{i}].smoothing", "must be >= 0 (0: sharp edges)")
            if float(vol.smoothing) == 0:
                self._sharp.append(i)
                edges += [float(vol.x_min), float(vol.x_max)]
            else:
                self._smooth.append(i)
        # Edges shared by adjacent sharp volumes are computed once.
        self._edges = np.array(sorted(set(edges)), dtype=float)
        self._edge_index = {
            i: (
                int(np.searchsorted(self._edges, float(self.volumes[i].x_min))),
                int(np.searchsorted(self._edges, float(self.volumes[i].x_max))),
            )
            for i in self._sharp
        }
        self._ia = np.array([self._edge_index[i][0] for i in self._sharp], dtype=np.int64)
        self._ib = np.array([self._edge_index[i][1] for i in self._sharp], dtype=np.int64)
        smooth = [self.volumes[i] for i in self._smooth]
        self._sa = np.array([float(v.x_min) for v in smooth])[:, None, None]
        self._sb = np.array([float(v.x_max) for v in smooth])[:, None, None]
        self._sinv = 1.0 / np.array([float(v.smoothing) for v in smooth])[:, None, None]

        if grid_x is not None:
            grid_x = np.asarray(grid_x, dtype=float)
            if grid_x.ndim != 1 or grid_x.size < 2:
                raise ValueError("grid_x must be a 1D array of at least 2 points")
            if profile_bandwidth is None:
                profile_bandwidth = 2.0 * float(grid_x[1] - grid_x[0])
            if not profile_bandwidth > 0:
                raise ConfigError("profile_bandwidth", f"must be > 0 (got {profile_bandwidth})")
        self.grid_x = grid_x
        self.profile_bandwidth = None if grid_x is None else float(profile_bandwidth)

        self._shapes = self._slot_shapes()
        self._totals: BlockSums | None = None
        self._block: dict[str, Any] | None = None

    # ------------------------------------------------------------------ layout

    def _slot_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for i, vol in enumerate(self.volumes):
            quantities = FRAME_QUANTITIES
            if i in self._smooth:
                quantities = quantities + SMOOTH_FRAME_QUANTITIES
            for q in quantities:
                shapes[f"volumes/{vol.name}/{q}"] = (self.n_frames,)
            for q in WINDOW_QUANTITIES:
                shapes[f"volumes/{vol.name}/window/{q}"] = (self.n_windows,)
        if self.grid_x is not None:
            n_x = self.grid_x.size
            for q in PROFILE_QUANTITIES:
                shapes[f"fields/{q}"] = (self.n_frames, n_x)
            shapes["fields/window/power_density"] = (self.n_windows, n_x)
        return shapes

    # ------------------------------------------------------------------ blocks

    def begin_block(self, sample_ids: Sequence[int] | np.ndarray) -> None:
        """Start a block of worlds; rows of every ``record`` array follow ``sample_ids``.

        Parameters
        ----------
        sample_ids : sequence of int, shape (n_block,)
            Increasing sample ids of the block's worlds.
        """
        if self._block is not None:
            raise RuntimeError("begin_block called twice without end_block")
        ids = np.asarray(sample_ids, dtype=np.int64)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError("sample_ids must be a non-empty 1D sequence")
        if np.any(np.diff(ids) <= 0):
            raise ValueError("sample_ids must be strictly increasing")
        self._block = {
            "ids": ids,
            "n": ids.size,
            "step": 0,
            "mean": {k: np.full(s, np.nan) for k, s in self._shapes.items()},
            "m2": {k: np.full(s, np.nan) for k, s in self._shapes.items()},
        }

    def end_block(self) -> BlockSums:
        """Finish the block (all steps 0..n_steps recorded) and return its statistics.

        The estimator's totals are not changed: pass the result to :meth:`merge` in block order.
        """
        b = self._block
        if b is None:
            raise RuntimeError("end_block called without begin_block")
        if b["step"] != self.n_steps + 1:
            raise RuntimeError(
                f"block ended after step {b['step'] - 1}; record steps 0..{self.n_steps} first"
            )
        self._block = None
        ids = b["ids"]
        return BlockSums(int(ids[0]), int(ids[-1]), int(ids.size), b["mean"], b["m2"])

    def merge(self, block: BlockSums) -> None:
        """Add a block's statistics to the totals (blocks must come in increasing sample-id order)."""
        if self._totals is None:
            self._totals = block.copy()
            return
        t = self._totals
        if block.first_id <= t.last_id:
            raise ValueError(
                f"blocks must be merged in sample-id order: block starting at id {block.first_id} "
                f"after ids up to {t.last_id}"
            )
        if set(block.mean) != set(t.mean):
            raise ValueError("block statistics do not match this estimator's layout")
        na, nb = t.n_samples, block.n_samples
        n = na + nb
        for key in t.mean:
            delta = block.mean[key] - t.mean[key]
            t.mean[key] = t.mean[key] + delta * (nb / n)
            t.m2[key] = t.m2[key] + block.m2[key] + delta**2 * (na * nb / n)
        t.n_samples = n
        t.last_id = block.last_id

    @property
    def totals(self) -> BlockSums | None:
        """The merged statistics so far (for checkpoints), or None."""
        return self._totals

    @property
    def n_samples(self) -> int:
        return 0 if self._totals is None else self._totals.n_samples

    # ------------------------------------------------------------------ recording

    # Rows of the per-step product stack P = w * [1, e, f, c, a, v, v e] (a = (2/hbar) Gamma_tot e).
    _W, _WE, _WF, _WC, _WA, _WV, _WVE = range(7)

    def record(
        self,
        step: int,
        X: np.ndarray,
        v: np.ndarray,
        e: np.ndarray,
        field_power: np.ndarray,
        pair_power: np.ndarray | None = None,
        weight: np.ndarray | None = None,
        gamma_total: np.ndarray | None = None,
    ) -> None:
        """Record step n of the current block's worlds.

        Parameters
        ----------
        step : int
            n; must be 0, 1, ..., n_steps in order.
        X : ndarray, shape (n_block, N)
            Positions [bohr] (NaN allowed for removed worlds).
        v : ndarray, shape (n_block, N)
            Velocities [bohr / atomic time].
        e : ndarray, shape (n_block, N)
            Per-electron energies e_k [hartree] (THEORY.md section 2).
        field_power : ndarray, shape (n_block, N)
            f_k = q E(X_k, t) v_k [hartree / atomic time] (chi = 1: q d_t phi(X_k, t)).
        pair_power : ndarray, shape (n_block, N), optional
            c_k = (1/2) sum_{j != k} F_kj (v_k + v_j) [hartree / atomic time]; None: 0.
        weight : ndarray, shape (n_block,), optional
            w_i(t) (THEORY.md section 6); 0 marks a removed world; None: 1.
        gamma_total : ndarray, shape (n_block,), optional
            Gamma_tot = sum_j Gamma(X_j) [hartree]; None: 0.
        """
        b = self._block
        if b is None:
            raise RuntimeError("record called outside begin_block/end_block")
        if step != b["step"]:
            raise ValueError(f"record expected step {b['step']}, got {step}")
        nb = b["n"]
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[0] != nb:
            raise ValueError(f"X must have shape (n_block={nb}, N), got {X.shape}")
        shape = X.shape
        if step == 0:
            b["N"] = shape[1]
        elif shape[1] != b["N"]:
            raise ValueError(f"number of electrons changed from {b['N']} to {shape[1]}")
        v = self._check(v, shape, "v")
        e = self._check(e, shape, "e")
        f = self._check(field_power, shape, "field_power")
        w = np.ones(nb) if weight is None else self._check(weight, (nb,), "weight")

        # Internal layout is electron-major, (N, n_block): sums over electrons then add whole
        # rows in a fixed order (fast, and each world's value independent of the block's size).
        X = X.T
        lay = (shape[1], nb)
        P = np.empty((7,) + lay)
        P[self._W] = 1.0
        P[self._WE] = e.T
        P[self._WF] = f.T
        if pair_power is None:
            P[self._WC] = 0.0
        else:
            P[self._WC] = self._check(pair_power, shape, "pair_power").T
        if gamma_total is None:
            P[self._WA] = 0.0
        else:
            g = self._check(gamma_total, (nb,), "gamma_total")
            np.multiply(P[self._WE], (2.0 / HBAR) * g, out=P[self._WA])
        P[self._WV] = v.T
        np.multiply(P[self._WV], P[self._WE], out=P[self._WVE])
        alive = w != 0
        if not alive.all():
            # Removed worlds: positions held (no crossings), every weighted value exactly 0
            # (their inputs may be NaN, and 0 * NaN is NaN).
            X = np.where(alive, X, b["X"] if step > 0 else 0.0)
            P[:, :, ~alive] = 0.0
        P *= w

        cur: dict[str, Any] = {"X": X, "P": P, "alive": alive}
        V = len(self.volumes)
        TH = np.empty((V,) + lay)
        if self._sharp:
            h = 0.5 + 0.5 * np.sign(X - self._edges[:, None, None])  # H with H(0) = 1/2
            cur["h"] = h
            TH[self._sharp] = h[self._ia] - h[self._ib]
        if self._smooth:
            # The tanh window of THEORY.md section 2 for all smooth volumes at once, with
            # Theta' = (1/2s)[(1 - tanh_a^2) - (1 - tanh_b^2)] from the same two tanh evaluations
            # (absolute error ~1e-16/s where sech^2 underflows); equal to Volume.theta/dtheta.
            ta = np.tanh((X - self._sa) * self._sinv)
            tb = np.tanh((X - self._sb) * self._sinv)
            TH[self._smooth] = 0.5 * (ta - tb)
            D = (0.5 * self._sinv) * (tb * tb - ta * ta)
            # Theta' sums: particle flux, boundary flux, shape (2, n_smooth, n_block).
            cur["D"] = (D[None] * P[self._WV :, None]).sum(axis=2)
        # Theta sums: particles, energy, field work, interaction, absorbed, shape (5, V, n_block).
        cur["S"] = (TH[None] * P[: self._WVE - 1, None]).sum(axis=2)

        W = self.window_steps
        if 0 < step <= self.n_windows * W:
            self._integrate_step(b, b["prev"], cur)
        if step % W == 0 and step // W <= self.n_windows:
            k = step // W
            profiles = None
            if self.grid_x is not None and self.n_windows > 0:
                profiles = self._profiles(cur, need_all=step in self._frame_slot)
            self._window_boundary(b, k, cur, profiles)
        else:
            profiles = None
        if step in self._frame_slot:
            if profiles is None and self.grid_x is not None:
                profiles = self._profiles(cur, need_all=True)
            self._frame(b, self._frame_slot[step], cur, profiles)

        b["prev"] = cur
        b["X"] = X
        b["step"] = step + 1

    @staticmethod
    def _check(a, shape, name) -> np.ndarray:
        a = np.asarray(a, dtype=float)
        if a.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
        return a

    # ------------------------------------------------------------------ internals

    def _integrate_step(self, b, prev, cur) -> None:
        """Add the step (t_{n-1}, t_n) to the running window integrals (not yet divided by T)."""
        dt = self.dt
        half = 0.5 * dt
        S0, S1 = prev["S"], cur["S"]
        P0, P1 = prev["P"], cur["P"]
        died = prev["alive"] & ~cur["alive"]
        if died.any():
            # Removal at the start of the step: the removed world's energy in Omega goes to
            # `absorbed`, and the step carries no integrals or crossings for it.
            b["acc"][2] += np.where(died, S0[1], 0.0)
            keep = cur["alive"]
            S0 = S0 * keep
            P0 = P0 * keep
            if "D" in prev:
                prev = dict(prev, D=prev["D"] * keep)
        # Trapezoid of the Theta-weighted integrands (exact split for sharp crossings added below).
        b["acc"][:3] += half * (S0[2:] + S1[2:])
        if self._smooth:
            b["acc"][3:, self._smooth] += half * (prev["D"] + cur["D"])
        if self._sharp:
            h0, h1 = prev["h"], cur["h"]
            dh = h1 - h0
            if dh.any():
                self._crossings(b, prev["X"], cur["X"], h0, h1, dh, P0, P1)

    def _crossings(self, b, X0, X1, h0, h1, dh, P0, P1) -> None:
        """Sharp edges crossed during the step: exact split of the integrals and the crossing sums.

        For one edge, H jumps from h0 to h1 at the linearly interpolated crossing fraction tau, and
        each integrand g is linear across the step: int_0^1 H g ds = h1 (g0 + g1)/2 - dh G(tau),
        G(tau) = tau (g0 + tau (g1 - g0)/2); the trapezoid already added, (h0 g0 + h1 g1)/2, is
        subtracted. The crossing sums are dh (g0 + tau (g1 - g0)) for g = w and w e. Only the
        (edge, world, electron) events with dh != 0 are visited, in a fixed order per world.
        """
        ei, ki, wi = np.nonzero(dh)  # dh is (edge, electron, world)
        x0, x1 = X0[ki, wi], X1[ki, wi]
        with np.errstate(divide="ignore", invalid="ignore"):
            tau = np.clip((self._edges[ei] - x0) / (x1 - x0), 0.0, 1.0)
        h0v, h1v, dhv = h0[ei, ki, wi], h1[ei, ki, wi], dh[ei, ki, wi]
        g0, g1 = (
            P0[2:5, ki, wi],
            P1[2:5, ki, wi],
        )  # (3, n_events): field work, interaction, absorbed
        split = h1v * (0.5 * (g0 + g1)) - dhv * (tau * (g0 + 0.5 * tau * (g1 - g0)))
        split -= 0.5 * (h0v * g0 + h1v * g1)
        c0, c1 = P0[:2, ki, wi], P1[:2, ki, wi]  # w, w e
        cross = dhv * (c0 + tau * (c1 - c0))
        per_edge = np.zeros((5, self._edges.size, b["n"]))
        np.add.at(per_edge, (slice(None), ei, wi), np.concatenate([split * self.dt, cross]))
        b["acc"][:, self._sharp] += per_edge[:, self._ia] - per_edge[:, self._ib]

    # Accumulator rows: field_work, interaction, absorbed (time integrals),
    # particle_flux, boundary_flux (integrated amounts).
    _ACC = ("field_work", "interaction", "absorbed", "particle_flux", "boundary_flux")

    def _window_boundary(self, b, k, cur, profiles) -> None:
        """Close window k - 1 (if any) and open window k (if it is a full window)."""
        T = self.window
        energy = cur["S"][1]
        if k >= 1:
            slot = k - 1
            acc = b["acc"] / T
            power = (energy - b["energy_start"]) / T
            # quantum = power - field_work - interaction - boundary_flux + absorbed, per world
            quantum = power - acc[0] - acc[1] - acc[4] + acc[2]
            for i, vol in enumerate(self.volumes):
                base = f"volumes/{vol.name}/window/"
                for r, q in enumerate(self._ACC):
                    self._fold(b, base + q, slot, acc[r, i])
                self._fold(b, base + "power", slot, power[i])
                self._fold(b, base + "quantum", slot, quantum[i])
            if profiles is not None:
                p = (profiles["energy_density"] - b["eps_start"]) / T
                self._fold(b, "fields/window/power_density", slot, p)
        if k < self.n_windows:
            b["acc"] = np.zeros((5, len(self.volumes), b["n"]))
            b["energy_start"] = energy
            if profiles is not None:
                b["eps_start"] = profiles["energy_density"]

    def _frame(self, b, slot, cur, profiles) -> None:
        S = cur["S"]
        for i, vol in enumerate(self.volumes):
            base = f"volumes/{vol.name}/"
            for r, q in enumerate(FRAME_QUANTITIES):
                self._fold(b, base + q, slot, S[r, i])
        for j, i in enumerate(self._smooth):
            base = f"volumes/{self.volumes[i].name}/"
            self._fold(b, base + "particle_flux", slot, cur["D"][0, j])
            self._fold(b, base + "boundary_flux", slot, cur["D"][1, j])
        if profiles is not None:
            for q in PROFILE_QUANTITIES:
                self._fold(b, f"fields/{q}", slot, profiles[q])

    def _profiles(self, cur, need_all: bool) -> dict[str, np.ndarray]:
        """Per-world kernel estimates on grid_x, shape (n_block, n_x) each."""
        x = self.grid_x
        h = self.profile_bandwidth
        norm = 1.0 / (np.sqrt(2.0 * np.pi) * h)
        X, P = cur["X"], cur["P"]
        n_el, nb = X.shape
        out = {"energy_density": np.zeros((nb, x.size))}
        if need_all:
            out["density"] = np.zeros((nb, x.size))
            out["current"] = np.zeros((nb, x.size))
        for k in range(n_el):
            z = (x[None, :] - X[k, :, None]) / h
            kern = norm * np.exp(-0.5 * z * z)
            # Removed worlds have weight 0 and finite held positions, so they add exactly 0.
            out["energy_density"] += P[self._WE, k, :, None] * kern
            if need_all:
                out["density"] += P[self._W, k, :, None] * kern
                out["current"] += P[self._WV, k, :, None] * kern
        return out

    @staticmethod
    def _fold(b, key, slot, y) -> None:
        """Block mean and centred sum of squares over the block's worlds (two passes)."""
        mean = np.mean(y, axis=0)
        b["mean"][key][slot] = mean
        b["m2"][key][slot] = np.sum((y - mean) ** 2, axis=0)

    # ------------------------------------------------------------------ output

    def results(self) -> dict[str, Any]:
        """Means and standard errors of everything merged so far.

        Returns
        -------
        dict
            ``n_samples`` (int); ``time`` (n_frames,); ``window/t_start`` (n_windows,);
            ``volumes``: name -> dict with the frame arrays (n_frames,) ``particles``, ``energy``,
            ``field_work``, ``interaction``, ``absorbed`` (smooth volumes also ``boundary_flux``,
            ``particle_flux``), the window arrays (n_windows,) ``window/<quantity>`` for
            power, field_work, interaction, boundary_flux, absorbed, quantum, particle_flux, and
            ``window/t_start``; each value has a ``<name>_stderr`` twin.
            With ``grid_x``: ``grid/x`` (n_x,), ``profile_bandwidth`` and ``fields``: ``density``,
            ``current``, ``energy_density`` (n_frames, n_x), ``window/power_density``
            (n_windows, n_x), ``window/t_start``, each with ``_stderr``.
            Units: particles 1, energy hartree, densities 1/bohr, hartree/bohr, current
            1/atomic time, powers hartree/atomic time (power density per bohr).
        """
        t = self._totals
        if t is None:
            raise RuntimeError("no block has been merged")
        M = t.n_samples
        out: dict[str, Any] = {
            "n_samples": M,
            "time": self.time.copy(),
            "window/t_start": self.window_t_start.copy(),
            "volumes": {},
        }
        for vol in self.volumes:
            out["volumes"][vol.name] = {"window/t_start": self.window_t_start.copy()}
        if self.grid_x is not None:
            out["grid/x"] = self.grid_x.copy()
            out["profile_bandwidth"] = self.profile_bandwidth
            out["fields"] = {"window/t_start": self.window_t_start.copy()}
        with np.errstate(invalid="ignore", divide="ignore"):
            for key, mean in t.mean.items():
                stderr = np.sqrt(t.m2[key] / (M - 1) / M) if M > 1 else np.full_like(mean, np.nan)
                group, rest = key.split("/", 1)
                if group == "volumes":
                    name, q = rest.split("/", 1)
                    dest = out["volumes"][name]
                else:
                    q = rest
                    dest = out["fields"]
                dest[q] = mean.copy()
                dest[q + "_stderr"] = stderr
        return out
