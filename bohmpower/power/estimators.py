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
    quantum_flux   = (1/T) int Theta w d_t Q dt    (P_S; only with ``quantum_split``: the engine gives
                     d_t Q_k at fixed configuration, which needs an explicit Psi)
    quantum_nonlocal = quantum - quantum_flux      (P_N, the balance, as in exact runs)

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

**Energy jumps** (``energy_jump``, open systems): when an electron is injected or absorbed, the pair
energy (1/2) W(X_k - X_j) of each partner k appears or disappears at once. The caller gives these jumps
per electron; their Theta-weighted sum is booked as ``absorbed`` (a gain with a minus sign) at the
step that ends at the record, so the quantum term, the balance, does not carry them.

**Contributing worlds.** Besides mean and M2, each block keeps per volume quantity and per frame
or window slot the sum of the fourth powers of the per-world values, sum_i y_i^4 (raw sums, added in
block order under merging). With sum_i y_i^2 = M2 + M mean^2 they give the number of worlds that
contributed, the participation ratio (sum y^2)^2 / sum y^4 (``contributing_worlds``): n for n worlds
with values of one size, little for worlds whose values are far below the largest (the far tail of a
smooth field or volume edge), 0 where every value is 0. It tells a reader how many worlds carry an
estimate: with a handful, the sample standard error is itself unreliable (``compare``).

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
particle numbers. The kernel is not wrapped around periodic cells. On a uniform grid it is truncated at
10 h (see Cost); on a non-uniform one it is evaluated at every point.

**Several blocks at once.** ``begin_blocks(list_of_blocks)`` starts consecutive blocks together:
``record`` then takes the rows of all of them (their concatenation) in one call, and ``end_blocks``
returns one ``BlockSums`` per block, bit for bit those of the block recorded alone: the per-world values
do not depend on the other worlds, and each block's mean and M2 are reduced over its own worlds in the
same order (one reduction over a (rows, n_blocks, block size) view per run of equal-size blocks). The
block stays the statistical unit; only the number of calls changes.

**Cost.** ``record`` is numpy vectorised over the worlds and all volumes at once (electron-major
internal layout; crossings visited sparsely, only where an electron changed side of an edge), with the
quantities folded at a frame or window end stacked into one array. Its fixed overhead is some 50 small
numpy operations (a few tens of microseconds) per call, so recording all blocks of an ensemble in one
call (``begin_blocks``) costs ~0.1 us per world-step for N = 2 (4000 worlds), against ~1 us with one
call per block of 64. Profiles evaluate the kernel only within PROFILE_TRUNCATION = 10 bandwidths of each
electron on a uniform grid (the dropped tail is below exp(-50) = 2e-22 of the kernel's peak, far below
round-off) and scatter it with ``np.bincount``; their block statistics are formed on the grid range the
kernels reach, chunk by chunk of PROFILE_CHUNK worlds (outside that range every value is exactly 0).

**Not handled.** Positions are taken as continuous (unwrapped) coordinates: on a periodic cell a
trajectory wrapped back into [x_min, x_max) would show a spurious jump across the cell, and volumes are not
periodised. The kernel estimates are not wrapped either.

Everything is in atomic units (hbar = 1).
"""

from __future__ import annotations

import itertools
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


def contributing_worlds(mean, m2, sum4, n_samples: int) -> np.ndarray:
    """The number of worlds that carry an estimate: the participation ratio of the per-world values,
    (sum_i y_i^2)^2 / sum_i y_i^4, with sum_i y_i^2 = M2 + M mean^2.

    It is n when n worlds have values of one size and the rest 0, and counts a world whose value is
    far below the largest for little (a world in the far tail of a smooth field, of a smooth volume
    edge); 0 where every value is 0.
    """
    sum2 = np.asarray(m2, dtype=float) + n_samples * np.asarray(mean, dtype=float) ** 2
    sum4 = np.asarray(sum4, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        n = np.where(sum4 > 0, sum2 * sum2 / sum4, 0.0)
    return np.clip(np.nan_to_num(n), 0.0, float(n_samples))
#: Window averages of the split of the quantum term (``quantum_split``: engines with an explicit Psi).
QUANTUM_SPLIT = ("quantum_flux", "quantum_nonlocal")


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
    sum4 : dict str -> ndarray
        For the volume quantities: sum_i y_i^4 over the worlds, per frame or window slot, from
        which the number of worlds that contributed follows (``contributing_worlds``). Empty for
        block sums written before it existed (a merge with such a block drops it).
    """

    first_id: int
    last_id: int
    n_samples: int
    mean: dict = field(default_factory=dict)
    m2: dict = field(default_factory=dict)
    sum4: dict = field(default_factory=dict)

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
        for key, val in self.sum4.items():
            out["sum4/" + key] = val
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlockSums:
        """Inverse of :meth:`as_dict`."""
        mean = {k[5:]: np.asarray(v, dtype=float) for k, v in data.items() if k.startswith("mean/")}
        m2 = {k[3:]: np.asarray(v, dtype=float) for k, v in data.items() if k.startswith("m2/")}
        sum4 = {k[5:]: np.asarray(v, dtype=float) for k, v in data.items()
                if k.startswith("sum4/")}
        return cls(int(data["first_id"]), int(data["last_id"]), int(data["n_samples"]), mean, m2,
                   sum4)

    def copy(self) -> BlockSums:
        return BlockSums(
            self.first_id,
            self.last_id,
            self.n_samples,
            {k: v.copy() for k, v in self.mean.items()},
            {k: v.copy() for k, v in self.m2.items()},
            {k: v.copy() for k, v in self.sum4.items()},
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
        quantum_split: bool = False,
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
        self._stencil = None if grid_x is None else _kernel_stencil(grid_x, self.profile_bandwidth)

        self.quantum_split = bool(quantum_split)
        self._shapes = self._slot_shapes()
        self._layout()
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
            for q in WINDOW_QUANTITIES + (QUANTUM_SPLIT if self.quantum_split else ()):
                shapes[f"volumes/{vol.name}/window/{q}"] = (self.n_windows,)
        if self.grid_x is not None:
            n_x = self.grid_x.size
            for q in PROFILE_QUANTITIES:
                shapes[f"fields/{q}"] = (self.n_frames, n_x)
            shapes["fields/window/power_density"] = (self.n_windows, n_x)
        return shapes

    def _layout(self) -> None:
        """Rows of the stacked per-world quantities folded at frames and window ends.

        Frame rows: S[r, i] (quantity r of FRAME_QUANTITIES, volume i) at row r V + i, then the
        Theta' sums D[q, j] of the smooth volumes at 5 V + q n_smooth + j; window rows: the
        accumulators acc[r, i] (``_ACC``) at r V + i, power at 5 V + i, quantum at 6 V + i.
        ``self._source[key]`` says where each BlockSums key lives: (store, row).
        """
        V = len(self.volumes)
        names = [v.name for v in self.volumes]
        src: dict[str, tuple[str, int]] = {}
        for r, q in enumerate(FRAME_QUANTITIES):
            for i, name in enumerate(names):
                src[f"volumes/{name}/{q}"] = ("frame", r * V + i)
        n_sm = len(self._smooth)
        for q, quantity in enumerate(("particle_flux", "boundary_flux")):
            for j, i in enumerate(self._smooth):
                src[f"volumes/{names[i]}/{quantity}"] = ("frame", 5 * V + q * n_sm + j)
        for r, q in enumerate(self._ACC):
            for i, name in enumerate(names):
                src[f"volumes/{name}/window/{q}"] = ("window", r * V + i)
        for i, name in enumerate(names):
            src[f"volumes/{name}/window/power"] = ("window", 5 * V + i)
            src[f"volumes/{name}/window/quantum"] = ("window", 6 * V + i)
            src[f"volumes/{name}/window/quantum_flux"] = ("window", 7 * V + i)
            src[f"volumes/{name}/window/quantum_nonlocal"] = ("window", 8 * V + i)
        for r, q in enumerate(PROFILE_QUANTITIES):
            src[f"fields/{q}"] = ("profile", r)
        src["fields/window/power_density"] = ("power_density", 0)
        self._source = {k: src[k] for k in self._shapes}
        self._n_frame_rows = 5 * V + 2 * n_sm
        self._n_window_rows = (9 if self.quantum_split else 7) * V

    # ------------------------------------------------------------------ blocks

    def begin_block(self, sample_ids: Sequence[int] | np.ndarray) -> None:
        """Start a block of worlds; rows of every ``record`` array follow ``sample_ids``.

        Parameters
        ----------
        sample_ids : sequence of int, shape (n_block,)
            Increasing sample ids of the block's worlds.
        """
        self.begin_blocks([sample_ids])

    def begin_blocks(self, blocks: Sequence[Sequence[int] | np.ndarray]) -> None:
        """Start several blocks of worlds at once, recorded together and folded block by block.

        Each block keeps its own statistics, equal to what :meth:`begin_block` /
        :meth:`end_block` give for that block alone (the per-world values do not depend on the other
        worlds, and each block's mean and M2 are reduced over its own worlds in the same order);
        one ``record`` call then serves all of them, which saves the fixed cost per call.

        Parameters
        ----------
        blocks : sequence of sequences of int
            The blocks' sample ids, each strictly increasing, the blocks in increasing id order.
            Rows of every ``record`` array follow the concatenation of the blocks.
        """
        if self._block is not None:
            raise RuntimeError("begin_block called twice without end_block")
        ids = [np.asarray(s, dtype=np.int64) for s in blocks]
        if not ids:
            raise ValueError("blocks must hold at least one block of sample ids")
        for s in ids:
            if s.ndim != 1 or s.size == 0:
                raise ValueError("sample_ids must be a non-empty 1D sequence")
            if np.any(np.diff(s) <= 0):
                raise ValueError("sample_ids must be strictly increasing")
        for a, c in itertools.pairwise(ids):
            if c[0] <= a[-1]:
                raise ValueError("blocks must come in increasing sample-id order, without overlap")
        sizes = [s.size for s in ids]
        # Runs of consecutive blocks of equal size, (first world, first block, n_blocks, size): the
        # statistics of a run's blocks are one reduction over a (rows, n_blocks, size) view.
        runs = []
        w0 = k = 0
        while k < len(sizes):
            m = 1
            while k + m < len(sizes) and sizes[k + m] == sizes[k]:
                m += 1
            runs.append((w0, k, m, sizes[k]))
            w0 += m * sizes[k]
            k += m
        # The same runs cut into chunks of at most PROFILE_CHUNK worlds: the dense per-world
        # profiles (n_worlds, n_x) are formed and folded chunk by chunk (memory, cache).
        chunks = []
        for w0, k, m, size in runs:
            per = max(1, PROFILE_CHUNK // size)
            for j in range(0, m, per):
                mj = min(per, m - j)
                chunks.append((w0 + j * size, k + j, mj, size))
        n_b = len(ids)
        store = {
            "frame": (n_b, self._n_frame_rows, self.n_frames),
            "window": (n_b, self._n_window_rows, self.n_windows),
        }
        if self.grid_x is not None:
            store["profile"] = (n_b, len(PROFILE_QUANTITIES), self.n_frames, self.grid_x.size)
            store["power_density"] = (n_b, 1, self.n_windows, self.grid_x.size)
        self._block = {
            "ids": ids,
            "n": int(sum(sizes)),
            "runs": runs,
            "chunks": chunks,
            "step": 0,
            "mean": {k: np.full(s, np.nan) for k, s in store.items()},
            "m2": {k: np.full(s, np.nan) for k, s in store.items()},
            "sum4": {k: np.full(store[k], np.nan) for k in ("frame", "window")},
        }

    def end_block(self) -> BlockSums:
        """Finish the block (all steps 0..n_steps recorded) and return its statistics.

        The estimator's totals are not changed: pass the result to :meth:`merge` in block order.
        """
        b = self._block
        if b is not None and len(b["ids"]) != 1:
            raise RuntimeError("several blocks were begun: use end_blocks")
        return self.end_blocks()[0]

    def end_blocks(self) -> list[BlockSums]:
        """Finish the blocks begun together and return their statistics, one per block, in order."""
        b = self._block
        if b is None:
            raise RuntimeError("end_block called without begin_block")
        if b["step"] != self.n_steps + 1:
            raise RuntimeError(
                f"block ended after step {b['step'] - 1}; record steps 0..{self.n_steps} first"
            )
        self._block = None
        out = []
        for k, ids in enumerate(b["ids"]):
            mean, m2, sum4 = {}, {}, {}
            for key, (where, row) in self._source.items():
                mean[key] = b["mean"][where][k, row].copy()
                m2[key] = b["m2"][where][k, row].copy()
                if where in b["sum4"]:
                    sum4[key] = b["sum4"][where][k, row].copy()
            out.append(BlockSums(int(ids[0]), int(ids[-1]), int(ids.size), mean, m2, sum4))
        return out

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
        # sums of y^4 add; a block without them (an older checkpoint) leaves the totals without
        t.sum4 = ({key: t.sum4[key] + block.sum4[key] for key in t.sum4}
                  if set(block.sum4) == set(t.sum4) else {})
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
        quantum_source: np.ndarray | None = None,
        energy_jump: np.ndarray | None = None,
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
        quantum_source : ndarray, shape (n_block, N)
            With ``quantum_split`` (required for step >= 1, ignored at step 0): d_t Q_k at fixed
            configuration [hartree / atomic time] over the step that ends here, at its midpoint.
        energy_jump : ndarray, shape (n_block, N), optional
            The part of each e_k's change over the step that ends here that no rate describes
            [hartree]: in an open system, the pair energy an electron gains when a partner is
            injected and loses when one is absorbed (devices.engine). Booked as ``absorbed``
            (with a minus sign: energy brought in), so that the quantum balance is free of it.
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
        if self.quantum_split and step > 0:
            if quantum_source is None:
                raise ValueError("quantum_source is required with quantum_split")
            qs = self._check(quantum_source, shape, "quantum_source").T
            cur["WS"] = np.where(alive, qs, 0.0) * w
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
        if self.quantum_split:
            cur["TH"] = TH
        if energy_jump is not None and step > 0:
            jump = np.where(alive, self._check(energy_jump, shape, "energy_jump").T, 0.0) * w
            cur["J"] = (TH * jump[None]).sum(axis=1)

        W = self.window_steps
        if 0 < step <= self.n_windows * W:
            self._integrate_step(b, b["prev"], cur)
        window = step // W if step % W == 0 and step // W <= self.n_windows else None
        frame = self._frame_slot.get(step)
        if window is not None:
            self._window_boundary(b, window, cur)
        if frame is not None:
            self._frame(b, frame, cur)
        if self.grid_x is not None and self.n_windows == 0:
            window = None  # no window ever opens: no power density
        if self.grid_x is not None and (frame is not None or window is not None):
            self._profile_step(b, cur, frame, window)

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
        if "J" in cur:  # energy brought into Omega by injections (absorbed: energy taken out)
            b["acc"][2] -= cur["J"]
        # Trapezoid of the Theta-weighted integrands (exact split for sharp crossings added below).
        b["acc"][:3] += half * (S0[2:] + S1[2:])
        if self.quantum_split:
            # P_S: the midpoint value of d_t Q_k times the mean of Theta at the step's ends (for a
            # crossing the error dh (1/2 - tau) has zero mean over the crossing fraction tau)
            ws = cur["WS"] * cur["alive"] * prev["alive"]
            b["acc_qs"] += half * ((prev["TH"] + cur["TH"]) * ws[None]).sum(axis=1)
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

    def _window_boundary(self, b, k, cur) -> None:
        """Close window k - 1 (if any) and open window k (if it is a full window)."""
        T = self.window
        energy = cur["S"][1]
        if k >= 1:
            acc = b["acc"] / T
            power = (energy - b["energy_start"]) / T
            # quantum = power - field_work - interaction - boundary_flux + absorbed, per world
            quantum = power - acc[0] - acc[1] - acc[4] + acc[2]
            V = len(self.volumes)
            parts = [acc.reshape(5 * V, -1), power, quantum]
            if self.quantum_split:
                flux = b["acc_qs"] / T
                parts += [flux, quantum - flux]
            rows = np.concatenate(parts)
            self._fold_rows(b, "window", k - 1, rows)
        if k < self.n_windows:
            b["acc"] = np.zeros((5, len(self.volumes), b["n"]))
            b["acc_qs"] = np.zeros((len(self.volumes), b["n"]))
            b["energy_start"] = energy

    def _frame(self, b, slot, cur) -> None:
        S = cur["S"]
        rows = S.reshape(-1, S.shape[-1])
        if self._smooth:
            D = cur["D"]
            rows = np.concatenate([rows, D.reshape(-1, D.shape[-1])])
        self._fold_rows(b, "frame", slot, rows)

    def _fold_rows(self, b, where, slot, rows) -> None:
        """Per-block mean, M2 and sum of fourth powers of stacked per-world rows
        (n_rows, n_worlds), into ``slot``."""
        mean_out, m2_out, sum4_out = b["mean"][where], b["m2"][where], b["sum4"][where]
        for w0, k0, m, size in b["runs"]:
            y = rows[:, w0 : w0 + m * size].reshape(rows.shape[0], m, size)
            mean, m2 = _block_stats(y, axis=2)
            mean_out[k0 : k0 + m, :, slot] = mean.T
            m2_out[k0 : k0 + m, :, slot] = m2.T
            y2 = y * y
            sum4_out[k0 : k0 + m, :, slot] = np.sum(y2 * y2, axis=2).T

    def _profile_step(self, b, cur, frame, window) -> None:
        """Kernel profiles at a frame and/or window boundary, chunk by chunk of blocks.

        A chunk's per-world profiles are formed only on the grid range [lo, hi) its kernels reach;
        outside it every world's value is exactly 0, so the blocks' mean and M2 there are 0, as a
        reduction over the whole grid would give.
        """
        T = self.window
        X, P = cur["X"], cur["P"]
        start = b.setdefault("eps_start", {})
        for c, (w0, k0, m, size) in enumerate(b["chunks"]):
            sl = slice(w0, w0 + m * size)
            lo, hi, prof = self._profiles(X[:, sl], P[:, :, sl], need_all=frame is not None)
            if frame is not None:
                for r, q in enumerate(PROFILE_QUANTITIES):
                    self._fold_profile(b, "profile", k0, m, size, r, frame, lo, hi, prof[q])
            if window is None:
                continue
            eps = prof["energy_density"]
            if window >= 1:
                lo0, hi0, eps0 = start[c]
                plo, phi, e1 = lo, hi, eps
                if (lo0, hi0) != (lo, hi):
                    # both on the union of the two ranges (zero outside each)
                    plo, phi, e1, eps0 = _on_union(lo, hi, eps, lo0, hi0, eps0)
                p = (e1 - eps0) / T
                self._fold_profile(b, "power_density", k0, m, size, 0, window - 1, plo, phi, p)
            if window < self.n_windows:
                start[c] = (lo, hi, eps)

    @staticmethod
    def _fold_profile(b, where, k0, m, size, row, slot, lo, hi, y) -> None:
        """Per-block mean and M2 of per-world profiles y (m size, hi - lo) on grid points lo..hi-1."""
        for name in ("mean", "m2"):
            b[name][where][k0 : k0 + m, row, slot, :lo] = 0.0
            b[name][where][k0 : k0 + m, row, slot, hi:] = 0.0
        if hi > lo:
            mean, m2 = _block_stats(y.reshape(m, size, hi - lo), axis=1)
            b["mean"][where][k0 : k0 + m, row, slot, lo:hi] = mean
            b["m2"][where][k0 : k0 + m, row, slot, lo:hi] = m2

    def _profiles(self, X, P, need_all: bool) -> tuple[int, int, dict[str, np.ndarray]]:
        """Per-world kernel estimates on grid points lo..hi-1: (lo, hi, {name: (n_worlds, hi - lo)}).

        X is (N, n_worlds), P the product stack (7, N, n_worlds). On a uniform grid the kernel is
        evaluated only within PROFILE_TRUNCATION bandwidths of each electron and scattered with
        ``np.bincount`` (``_kernel_stencil``), and [lo, hi) is the range these stencils reach;
        otherwise at every grid point (lo, hi = 0, n_x). Both add the electrons' contributions in
        electron order starting from 0, with the same kernel values, so they agree to the dropped
        tail, below norm exp(-PROFILE_TRUNCATION^2 / 2) per electron.
        """
        rows = [("energy_density", self._WE)]
        if need_all:
            rows += [("density", self._W), ("current", self._WV)]
        if self._stencil is None:
            prof = _profiles_dense(self.grid_x, self.profile_bandwidth, X, P, rows)
            return 0, self.grid_x.size, prof
        return _profiles_stencil(self._stencil, self.profile_bandwidth, X, P, rows)

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
            ``window/t_start``; each value has a ``<name>_stderr`` twin and, when every merged
            block carried fourth-power sums, a ``<name>_worlds`` twin: the number of worlds that
            contributed to it at each frame or window (``contributing_worlds``).
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
                if key in t.sum4:
                    dest[q + "_worlds"] = contributing_worlds(mean, t.m2[key], t.sum4[key], M)
        return out


# ---------------------------------------------------------------------- helpers (plain numpy)

#: Worlds whose dense profiles (n_worlds, n_x) are formed and folded at once (memory and cache).
PROFILE_CHUNK = 512
#: The kernel is evaluated within this many bandwidths of each electron: beyond, a Gaussian of unit
#: weight is below norm * exp(-50) = 2e-22 norm, far below the round-off of any profile value.
PROFILE_TRUNCATION = 10.0


def _block_stats(y: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and centred sum of squares over ``axis`` (two passes; each block's worlds in order)."""
    mean = np.mean(y, axis=axis)
    d = y - np.expand_dims(mean, axis)
    np.square(d, out=d)  # in place: one temporary, not two
    return mean, np.sum(d, axis=axis)


@dataclass(frozen=True)
class _Stencil:
    """Truncated-kernel layout on a uniform grid, padded by ``width`` points at both ends."""

    x0: float
    dx: float
    n_x: int
    reach: float  # PROFILE_TRUNCATION * h [bohr]
    width: int  # stencil points per electron
    x_padded: np.ndarray  # (n_x + 2 width,) the grid and its continuation


def _kernel_stencil(x: np.ndarray, h: float) -> _Stencil | None:
    """The stencil of a uniform grid, or None (non-uniform grid, or no saving over the full grid)."""
    n_x = x.size
    dx = float(x[-1] - x[0]) / (n_x - 1)
    if not dx > 0 or not np.allclose(np.diff(x), dx, rtol=1e-9, atol=0.0):
        return None
    reach = PROFILE_TRUNCATION * h
    # floor((X - reach - x0)/dx) .. + width - 1 covers [X - reach, X + reach] with one point to
    # spare at each end against round-off in the floor.
    width = int(np.ceil(2.0 * reach / dx)) + 2
    if width >= n_x:
        return None
    pad = dx * np.arange(1, width + 1)
    x_padded = np.concatenate([x[0] - pad[::-1], x, x[-1] + pad])
    return _Stencil(float(x[0]), dx, n_x, reach, width, x_padded)


def _profiles_dense(x, h, X, P, rows) -> dict[str, np.ndarray]:
    """Kernel profiles evaluated at every grid point: ``{name: (n_worlds, n_x)}`` for each
    ``(name, row of P)`` in ``rows``; X (N, n_worlds) [bohr], P (7, N, n_worlds)."""
    norm = 1.0 / (np.sqrt(2.0 * np.pi) * h)
    n_el, nw = X.shape
    out = {name: np.zeros((nw, x.size)) for name, _ in rows}
    for k in range(n_el):
        z = (x[None, :] - X[k, :, None]) / h
        kern = norm * np.exp(-0.5 * z * z)
        # Removed worlds have weight 0 and finite held positions, so they add exactly 0.
        for name, r in rows:
            out[name] += P[r, k, :, None] * kern
    return out


def _profiles_stencil(st: _Stencil, h, X, P, rows) -> tuple[int, int, dict[str, np.ndarray]]:
    """As :func:`_profiles_dense`, the kernel truncated at ``st.reach`` and scattered by bincount.

    Each electron's stencil starts at grid index j0 = floor((X - reach - x0)/dx), clipped to
    [-width, n_x] so that it stays inside the padded grid: a clipped stencil lies wholly outside
    the grid, in the padding, which is cut off at the end (as are non-finite positions, mapped
    there too). Contributions are scattered in (electron, world, point) order, so every grid value
    is 0 + electron 0 + electron 1 + ..., the same sum as the dense loop.

    Returns (lo, hi, {name: (n_worlds, hi - lo)}): the grid points lo..hi-1 the stencils reach
    (lo = hi = 0 if none), the profiles there; every world's profile is exactly 0 elsewhere.
    """
    norm = 1.0 / (np.sqrt(2.0 * np.pi) * h)
    nw = X.shape[1]
    L, n_x = st.width, st.n_x
    with np.errstate(invalid="ignore"):
        j0 = np.floor((X - st.reach - st.x0) / st.dx)
    j0 = np.fmin(np.fmax(j0, -L), n_x).astype(np.intp)  # fmax maps NaN to -L
    first, last = int(j0.min()), int(j0.max()) + L  # padded-grid points first + L .. last + L - 1
    lo, hi = max(first, 0), min(last, n_x)
    if hi <= lo:
        return 0, 0, {name: np.zeros((nw, 0)) for name, _ in rows}
    span = last - first
    cols = j0[:, :, None] + (L + np.arange(L))  # (N, n_worlds, L) indices into x_padded
    z = (st.x_padded[cols] - X[:, :, None]) / h
    kern = norm * np.exp(-0.5 * z * z)
    index = (cols + (np.arange(nw) * span - first - L)[:, None]).ravel()
    out = {}
    for name, r in rows:
        dense = np.bincount(index, (P[r, :, :, None] * kern).ravel(), minlength=nw * span)
        out[name] = dense.reshape(nw, span)[:, lo - first : hi - first]
    return lo, hi, out


def _on_union(lo1, hi1, y1, lo0, hi0, y0):
    """Two per-world profiles on grid ranges [lo1, hi1) and [lo0, hi0), both put on their union."""
    lo, hi = min(lo0, lo1), max(hi0, hi1)
    a = np.zeros((y1.shape[0], hi - lo))
    c = np.zeros((y0.shape[0], hi - lo))
    a[:, lo1 - lo : hi1 - lo] = y1
    c[:, lo0 - lo : hi0 - lo] = y0
    return lo, hi, a, c
