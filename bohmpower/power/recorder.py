"""From trajectory states to estimator blocks: one place for what every trajectory source records.

Exact Bohmian worlds (all moving together under one Psi) and conditional-wavefunction worlds
(propagated block by block) both produce, at every step, a state with the attributes of
``bohmpower.exact.trajectories.TrajectoryState`` (X, v, e, Q, field_power, pair_power, weight,
gamma_total, ...). A :class:`BlockRecorder` takes the states of one fixed block of sample ids and
feeds them to one :class:`EnsembleEstimator`; it also keeps the stored trajectories of the block's
first samples and counts the worlds in which identical electrons crossed. A
:class:`MultiBlockRecorder` does the same for several consecutive blocks of a state in one call per
step (exact trajectories: all blocks of the ensemble at once) and returns one result per block, equal
to what a :class:`BlockRecorder` of each block gives. Blocks are merged in sample-id order by
:func:`merge_blocks`, so the result does not depend on which process ran which block.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from bohmpower.model.volume import Volume
from bohmpower.power.estimators import BlockSums, EnsembleEstimator

#: Worlds per block of sample ids: the unit of accumulation and merging (SPEC.md "Reproducibility").
#: Fixed by the code, never by the number of processes.
BLOCK_SIZE = 64

#: Name of the whole-cell volume a recorder adds when asked for global quantities.
GLOBAL_VOLUME = "__global__"

STORED = ("positions", "velocities", "energies", "quantum_potentials")
_STATE_FOR = {"positions": "X", "velocities": "v", "energies": "e", "quantum_potentials": "Q"}


def blocks_of(n_samples: int, first: int = 0) -> list[np.ndarray]:
    """The fixed blocks of sample ids [first, n_samples) in id order."""
    return [np.arange(s, min(s + BLOCK_SIZE, n_samples))
            for s in range(first - first % BLOCK_SIZE, n_samples, BLOCK_SIZE)]


@dataclass
class BlockResult:
    """What one block contributes: estimator sums, stored trajectories of its first ids, crossings."""

    sums: BlockSums
    stored: dict = field(default_factory=dict)  # sample id -> {name: (n_t, N) or (n_t,)}
    crossed: int = 0


def estimator_volumes(volumes, grid, with_global: bool):
    """The run's volumes, plus the whole cell when global quantities are wanted."""
    vols = list(volumes)
    if with_global:
        vols.append(Volume(GLOBAL_VOLUME, float(grid.x_min), float(grid.x_max), 0.0))
    return vols


class _Recorder:
    """What a recorder does at every step, for the worlds of one or several consecutive blocks."""

    def __init__(self, blocks, volumes, time, window_steps: int, grid_x, n_store: int,
                 identical: bool, quantum_split: bool = False):
        self.blocks = [np.asarray(b) for b in blocks]
        self.ids = np.concatenate(self.blocks)
        self.estimator = EnsembleEstimator(volumes, time.dt, time.n_steps, time.save_every,
                                           window_steps, grid_x=grid_x,
                                           quantum_split=quantum_split)
        self.estimator.begin_blocks(self.blocks)
        self.frame_slot = {s: i for i, s in enumerate(time.frame_steps)}
        self.n_t = len(time.frame_steps)
        self.keep = np.flatnonzero(self.ids < n_store)
        self.stored = {int(self.ids[i]): {} for i in self.keep}
        self.identical = identical
        self._pairs = None
        self._before = None
        self.crossed = np.zeros(len(self.ids), dtype=bool)

    def record(self, step: int, s) -> None:
        """Record the state after ``step`` (state arrays have one row per world, in id order)."""
        self.estimator.record(step, s.X, s.v, s.e, s.field_power, s.pair_power, s.weight,
                              s.gamma_total, getattr(s, "quantum_source", None))
        if self.identical:
            self._count_crossings(s.X, s.weight)
        slot = self.frame_slot.get(step)
        if slot is not None and len(self.keep):
            n = s.X.shape[1]
            for i in self.keep:
                d = self.stored[int(self.ids[i])]
                if not d:
                    for name in STORED:
                        d[name] = np.full((self.n_t, n), np.nan)
                    d["weights"] = np.zeros(self.n_t)
                for name in STORED:
                    d[name][slot] = getattr(s, _STATE_FOR[name])[i]
                d["weights"][slot] = s.weight[i]

    def _count_crossings(self, X, weight) -> None:
        """Mark the live worlds whose electrons changed order since the previous step.

        The order of a world's electrons (a stable sort of X) is fixed by the pairwise relations
        X_j <= X_k, j < k: it changed iff one of them changed. Removed worlds (NaN positions) have
        weight 0 and are not marked.
        """
        if self._pairs is None:
            self._pairs = np.triu_indices(X.shape[1], 1)
        j, k = self._pairs
        before = X[:, j] <= X[:, k]
        if self._before is not None:
            self.crossed |= (weight > 0) & np.any(before != self._before, axis=1)
        self._before = before

    def _finish_blocks(self) -> list[BlockResult]:
        out = []
        start = 0
        for ids, sums in zip(self.blocks, self.estimator.end_blocks()):
            stop = start + len(ids)
            stored = {sid: d for sid, d in self.stored.items() if ids[0] <= sid <= ids[-1]}
            out.append(BlockResult(sums, stored, int(self.crossed[start:stop].sum())))
            start = stop
        return out


class BlockRecorder(_Recorder):
    """Feeds the states of one block of worlds to its own estimator (see module docstring).

    Parameters
    ----------
    sample_ids : (B,) int, the block's ids (consecutive, in order).
    volumes : volumes passed to the estimator (see :func:`estimator_volumes`).
    time : the run's atomic-unit TimeConfig (dt, n_steps, save_every, frame_steps).
    window_steps : steps per power window.
    grid_x : grid points for the profiles, or None.
    n_store : samples 0..n_store-1 have their trajectories kept.
    identical : count crossings of identical electrons.
    quantum_split : the states carry ``quantum_source`` (d_t Q at fixed configuration): the
        estimator also gives the quantum term's split into quantum_flux (P_S) and quantum_nonlocal.
    """

    def __init__(self, sample_ids, volumes, time, window_steps: int, grid_x, n_store: int,
                 identical: bool, quantum_split: bool = False):
        super().__init__([sample_ids], volumes, time, window_steps, grid_x, n_store, identical,
                         quantum_split)

    def finish(self) -> BlockResult:
        return self._finish_blocks()[0]


class MultiBlockRecorder(_Recorder):
    """Records the worlds of several consecutive blocks in one call per step.

    Each block keeps its own statistics, equal to those of a :class:`BlockRecorder` of that block
    alone (``EnsembleEstimator.begin_blocks``), so checkpoints, the merge order and the results are
    unchanged; one call per step for all blocks saves the fixed cost of a call per block (the
    estimators' numpy overhead of some 50 small operations), which dominates for blocks of 64 worlds.

    Parameters
    ----------
    blocks : sequence of (B_b,) int arrays, the blocks' sample ids (``blocks_of``), in id order.
    volumes, time, window_steps, grid_x, n_store, identical : as for :class:`BlockRecorder`.

    Notes
    -----
    ``record(step, state)`` takes a state whose arrays have one row per world of the concatenated
    blocks (for exact trajectories: the whole ensemble, no slicing). ``finish()`` returns one
    :class:`BlockResult` per block, in order.
    """

    def finish(self) -> list[BlockResult]:
        return self._finish_blocks()


def merge_blocks(results, volumes, time, window_steps: int, grid_x, n_store: int,
                 n_particles: int):
    """Merge block results in sample-id order.

    Returns
    -------
    estimates : dict (``EnsembleEstimator.results()`` plus ``blocks``: each block's volume means,
        shape (n_blocks, ...), from which compare estimates the correlation of the estimates).
    stored : dict name -> (n_store, n_t, N) arrays (weights (n_store, n_t)).
    crossings : int, worlds in which identical electrons crossed.
    """
    merge = OrderedMerge(volumes, time, window_steps, grid_x, n_store, n_particles)
    for r in sorted(results, key=lambda r: r.sums.first_id):
        merge.add(r)
    return merge.finish()


class OrderedMerge:
    """:func:`merge_blocks` one block at a time: ``add`` the blocks in sample-id order as they
    arrive (each can be dropped at once), then ``finish``. The arithmetic is the same sequence of
    operations as merging the sorted list, so the result is the same to the bit; the memory is one
    estimator, the stored trajectories and each block's volume means (what the result file holds),
    never the blocks themselves.
    """

    def __init__(self, volumes, time, window_steps: int, grid_x, n_store: int, n_particles: int):
        self.total = EnsembleEstimator(volumes, time.dt, time.n_steps, time.save_every,
                                       window_steps, grid_x=grid_x)
        self.block_means: list[dict] = []
        self.crossings = 0
        self.stored = {name: np.full((n_store, len(time.frame_steps), n_particles), np.nan)
                       for name in STORED}
        self.stored["weights"] = np.zeros((n_store, len(time.frame_steps)))

    def add(self, r: BlockResult) -> None:
        """Merge one block (ids above every block added so far; the estimator refuses others)."""
        self.total.merge(r.sums)
        self.block_means.append({k: v for k, v in r.sums.mean.items()
                                 if k.startswith("volumes/")})
        self.crossings += r.crossed
        for sid, d in r.stored.items():
            for name, arr in d.items():
                self.stored[name][sid] = arr

    def finish(self):
        """(estimates, stored, crossings), as :func:`merge_blocks`."""
        out = self.total.results()
        bm = self.block_means
        if len(bm) >= 3:
            out["blocks"] = {k: np.array([b[k] for b in bm]) for k in bm[0]}
        return out, self.stored, self.crossings


def slice_state(state, sl):
    """The rows ``sl`` of every per-world array of a trajectory state (a shallow view)."""
    # A shallow copy with the arrays replaced by views: several times cheaper than
    # dataclasses.replace, which re-runs __init__ with every field.
    if not hasattr(state, "__dict__"):
        import dataclasses

        return dataclasses.replace(state, **{
            f.name: getattr(state, f.name)[sl] for f in dataclasses.fields(state)
            if isinstance(getattr(state, f.name), np.ndarray) and getattr(state, f.name).ndim >= 1})
    new = copy.copy(state)
    d = new.__dict__
    for name, val in d.items():
        if isinstance(val, np.ndarray) and val.ndim >= 1:
            d[name] = val[sl]
    return new
