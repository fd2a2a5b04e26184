"""Run loops: step a propagator and hand frames to observers on a cadence.

The numerics never print or write files. ``ExactSolver.frames()`` yields ``(step, t, psi)`` at the
stored frames; ``ExactSolver.run()`` turns those into an :class:`ExactResult` (arrays in atomic units)
while checking the run's numerical health, and calls observers (progress bars, writers) on the way.
"""

from __future__ import annotations

import logging
import time as _time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from bohmpower.errors import NumericalError
from bohmpower.exact.observables import frame as grid_frame
from bohmpower.exact.propagator import SplitOperator
from bohmpower.model import Model, build_model

log = logging.getLogger(__name__)

#: Relative norm change allowed per run on a closed (periodic, absorber-free) grid before the run stops.
NORM_TOLERANCE = 1e-6
#: Fraction of the spectral weight allowed in the top 10% of the grid's wavenumbers before the run stops.
SPECTRAL_EDGE_TOLERANCE = 1e-6


@dataclass
class ExactResult:
    """Everything an exact run produced, in atomic units.

    Attributes
    ----------
    time : (n_t,) stored times.
    fields : dict name -> (n_t, n_x) array.
    volumes : dict volume name -> dict quantity -> (n_t,) array.
    globals : dict name -> (n_t,) array.
    diagnostics : dict of arrays and scalars (health checks, P_N direct minus balance).
    """

    model: Model
    time: np.ndarray
    fields: dict
    volumes: dict
    globals: dict
    diagnostics: dict = field(default_factory=dict)
    wall_time: float = 0.0
    warnings: list = field(default_factory=list)


def initial_state(model: Model, workers: int = 1) -> np.ndarray:
    """Psi0 on the N-d grid: orbitals' determinant/product, or a many-body eigenstate."""
    from bohmpower.model.initial import many_body_product

    if model.many_body_state is not None:
        from bohmpower.exact.eigen import many_body_eigenstate

        w = model.interaction.w if model.interaction.kind != "none" else None
        energy, psi = many_body_eigenstate(
            model.grid.x,
            model.grid.k,
            model.mass,
            model.n_particles,
            model.u0,
            w,
            model.statistics,
            model.many_body_state,
        )
        log.info("many-body state %d: energy %.10g hartree", model.many_body_state, energy)
        return psi.astype(np.complex128, copy=False)
    return many_body_product(model.orbitals, model.statistics)


class ExactSolver:
    """Exact N-electron propagation on the full product grid (N <= 3) with grid observables.

    Parameters
    ----------
    config : RunConfig
        The run, in any unit system (converted to atomic units here, once).
    workers : int
        FFT threads.
    """

    def __init__(self, config, workers: int | None = None):
        self.config = config
        atomic = config.to_atomic() if config.units.system != "atomic" else config
        self.model, self.warnings = build_model(atomic, command="exact")
        numerics = atomic.numerics
        self.workers = workers if workers is not None else numerics.fft_workers
        self.dt = atomic.time.dt
        self.time_config = atomic.time
        m = self.model
        w = m.interaction.w if m.interaction.kind != "none" else None
        self.propagator = SplitOperator(
            m.grid.x,
            m.mass,
            m.n_particles,
            m.u0,
            m.gamma,
            w,
            np.array([d.potential_shape for d in m.drives]).reshape(len(m.drives), m.grid.n_x),
            [d.profile for d in m.drives],
            self.dt,
            order=numerics.order,
            workers=self.workers,
        )
        self.psi = initial_state(self.model, self.workers)

    def frames(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """Yield ``(step, t, psi)`` at every stored frame, psi being the live array (do not keep it)."""
        psi = self.psi
        step = 0
        t = 0.0
        yield step, t, psi
        for target in self.time_config.frame_steps[1:]:
            n = target - step
            self.propagator.advance(psi, t, n)
            step = target
            t = step * self.dt
            yield step, t, psi

    def run(self, observers: tuple[Callable, ...] = ()) -> ExactResult:
        """Propagate to t_end, evaluating the grid observables at every stored frame.

        Observers are called as ``observer(step, t, frame)`` after each frame.
        """
        start = _time.perf_counter()
        m = self.model
        frames = []
        health = HealthMonitor(m, self.dt)
        for step, t, psi in self.frames():
            fr = grid_frame(psi, m, t, workers=self.workers)
            health.check(step, t, psi, fr)
            frames.append(fr)
            for obs in observers:
                obs(step, t, fr)
        wall = _time.perf_counter() - start
        result = collect_frames(m, frames)
        result.diagnostics.update(health.summary())
        result.wall_time = wall
        result.warnings = list(self.warnings) + health.warnings
        return result


def collect_frames(model: Model, frames: list) -> ExactResult:
    """Stack per-frame observables into time series."""
    time = np.array([f.t for f in frames])
    fields = {k: np.array([f.fields[k] for f in frames]) for k in frames[0].fields}
    volumes = {
        name: {q: np.array([f.volumes[name][q] for f in frames]) for q in frames[0].volumes[name]}
        for name in frames[0].volumes
    }
    glob = {k: np.array([f.globals[k] for f in frames]) for k in frames[0].globals}
    diagnostics = {}
    pn = {
        name: vol.pop("pn_direct_minus_balance")
        for name, vol in volumes.items()
        if "pn_direct_minus_balance" in vol
    }
    if pn:
        diagnostics["pn_direct_minus_balance"] = pn
    for vol in volumes.values():
        vol.pop("pn_direct", None)
    return ExactResult(model=model, time=time, fields=fields, volumes=volumes, globals=glob,
                       diagnostics=diagnostics)


class HealthMonitor:
    """Run-time numerical health: NaN, norm, energy drift, resolution, absorption at the edges.

    A failed check raises :class:`NumericalError` with the step, the time and the likely cause.
    """

    def __init__(self, model: Model, dt: float):
        self.model = model
        self.dt = dt
        self.closed = not np.any(model.gamma > 0)
        self.static = len(model.drives) == 0
        self.norm0 = None
        self.energy0 = None
        self.max_norm_error = 0.0
        self.max_energy_drift = 0.0
        self.max_spectral_edge = 0.0
        self.warnings: list[str] = []
        self._edge_warned = False

    def check(self, step: int, t: float, psi: np.ndarray, fr) -> None:
        norm = fr.globals["norm"]
        if not np.all(np.isfinite(psi)) or not np.isfinite(norm):
            raise NumericalError(step, t, "NaN or infinity in the wavefunction: dt too large for "
                                 "the potential, or a singular potential on the grid")
        if self.norm0 is None:
            self.norm0 = norm
            self.energy0 = fr.globals["energy"]
        rel = abs(norm - self.norm0) / self.norm0
        if self.closed:
            self.max_norm_error = max(self.max_norm_error, rel)
            if rel > NORM_TOLERANCE:
                raise NumericalError(step, t, f"norm changed by {rel:.2e} on a closed grid: the "
                                     "propagator is unstable (reduce time.dt)")
        elif norm > self.norm0 * (1 + NORM_TOLERANCE):
            raise NumericalError(step, t, f"norm grew by {rel:.2e} with absorbing layers")
        if self.closed and self.static:
            drift = abs(fr.globals["energy"] - self.energy0) / max(abs(self.energy0), 1e-12)
            self.max_energy_drift = max(self.max_energy_drift, drift)
        edge = spectral_edge_weight(psi)
        self.max_spectral_edge = max(self.max_spectral_edge, edge)
        if edge > SPECTRAL_EDGE_TOLERANCE:
            raise NumericalError(step, t, f"{edge:.1e} of the probability sits in the top 10% of the "
                                 "grid's wavenumbers: the grid no longer resolves the largest momentum "
                                 "(increase grid.points)")
        if not self._edge_warned:
            n = fr.fields["density"]
            edge_density = max(n[0], n[-1]) / max(n.max(), 1e-300)
            if edge_density > 1e-6:
                self._edge_warned = True
                where = "the grid's seam (periodic wrap-around)" if self.closed else \
                    "the outer edge of the absorbing layers (absorption incomplete)"
                msg = (f"t = {t:.6g}: density at {where} reached {edge_density:.1e} of its maximum")
                log.warning(msg)
                self.warnings.append(msg)

    def summary(self) -> dict:
        return {
            "health/max_norm_error": self.max_norm_error,
            "health/max_energy_drift": self.max_energy_drift,
            "health/max_spectral_edge_weight": self.max_spectral_edge,
        }


def spectral_edge_weight(psi: np.ndarray) -> float:
    """Fraction of sum |psi_k|^2 in the top 10% of |k| along any axis (max over axes)."""
    n_x = psi.shape[0]
    worst = 0.0
    # One N-d FFT; the per-axis marginal of |psi_k|^2 gives every axis at once.
    pk = np.abs(np.fft.fftn(psi)) ** 2
    total = pk.sum()
    kidx = np.abs(np.fft.fftfreq(n_x) * n_x)
    top = kidx >= 0.9 * (n_x // 2)
    for axis in range(psi.ndim):
        other = tuple(a for a in range(psi.ndim) if a != axis)
        marg = pk.sum(axis=other) if other else pk
        worst = max(worst, float(marg[top].sum() / total))
    return worst
