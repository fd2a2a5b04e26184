"""From trajectory states to estimator blocks: one place for what every trajectory source records.

Exact Bohmian worlds (all moving together under one Psi) and conditional-wavefunction worlds
(propagated block by block) both produce, at every step, a state with the attributes of
``bohmpower.exact.trajectories.TrajectoryState`` (X, v, e, Q, field_power, pair_power, weight,
gamma_total, ...). A :class:`BlockRecorder` takes the states of one fixed block of sample ids and
feeds them to one :class:`EnsembleEstimator`; it also keeps the stored trajectories of the block's
first samples and counts the worlds in which identical electrons crossed. Blocks are merged in
sample-id order by :func:`merge_blocks`, so the result does not depend on which process ran which
block.
"""

from __future__ import annotations

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


class BlockRecorder:
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
    """

    def __init__(self, sample_ids, volumes, time, window_steps: int, grid_x, n_store: int,
                 identical: bool):
        self.ids = np.asarray(sample_ids)
        self.estimator = EnsembleEstimator(volumes, time.dt, time.n_steps, time.save_every,
                                           window_steps, grid_x=grid_x)
        self.estimator.begin_block(self.ids)
        self.frame_slot = {s: i for i, s in enumerate(time.frame_steps)}
        self.n_t = len(time.frame_steps)
        self.keep = np.flatnonzero(self.ids < n_store)
        self.stored = {int(self.ids[i]): {} for i in self.keep}
        self.identical = identical
        self._order = None
        self.crossed = np.zeros(len(self.ids), dtype=bool)

    def record(self, step: int, s) -> None:
        """Record the block's state after ``step`` (state arrays have the block's B rows)."""
        self.estimator.record(step, s.X, s.v, s.e, s.field_power, s.pair_power, s.weight,
                              s.gamma_total)
        if self.identical:
            order = np.argsort(np.nan_to_num(s.X, nan=np.inf), axis=1)
            if self._order is not None:
                self.crossed |= (s.weight > 0) & np.any(order != self._order, axis=1)
            self._order = order
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

    def finish(self) -> BlockResult:
        return BlockResult(self.estimator.end_block(), self.stored, int(self.crossed.sum()))


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
    results = sorted(results, key=lambda r: r.sums.first_id)
    total = EnsembleEstimator(volumes, time.dt, time.n_steps, time.save_every, window_steps,
                              grid_x=grid_x)
    block_means = []
    crossings = 0
    stored = {name: np.full((n_store, len(time.frame_steps), n_particles), np.nan)
              for name in STORED}
    stored["weights"] = np.zeros((n_store, len(time.frame_steps)))
    for r in results:
        total.merge(r.sums)
        block_means.append({k: v for k, v in r.sums.mean.items() if k.startswith("volumes/")})
        crossings += r.crossed
        for sid, d in r.stored.items():
            for name, arr in d.items():
                stored[name][sid] = arr
    out = total.results()
    if len(block_means) >= 3:
        out["blocks"] = {k: np.array([bm[k] for bm in block_means]) for k in block_means[0]}
    return out, stored, crossings


def slice_state(state, sl):
    """The rows ``sl`` of every per-world array of a trajectory state (a shallow view)."""
    import dataclasses

    changes = {}
    for f in dataclasses.fields(state):
        val = getattr(state, f.name)
        if isinstance(val, np.ndarray) and val.ndim >= 1:
            changes[f.name] = val[sl]
    return dataclasses.replace(state, **changes)
