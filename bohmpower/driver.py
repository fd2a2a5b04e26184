"""Run loops: step a propagator and hand frames to observers on a cadence.

The numerics never print or write files. ``ExactSolver.frames()`` yields ``(step, t, psi)`` at the
stored frames; ``ExactSolver.run()`` turns those into an :class:`ExactResult` (arrays in atomic units)
while checking the run's numerical health, and calls observers (progress bars, writers) on the way.
"""

from __future__ import annotations

import dataclasses

import logging
import time as _time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from bohmpower.errors import BohmpowerError, ConfigError, NumericalError, StoppedEarly
from bohmpower.exact.observables import EDGE_TERMS, FrameSetup, edge_terms
from bohmpower.exact.observables import frame as grid_frame
from bohmpower.exact.propagator import SplitOperator
from bohmpower.exact.quadrature import node_stride, window_rule
from bohmpower.model import Model, build_model
from bohmpower.units import ATOMIC

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
    diagnostics : dict of arrays and scalars (health checks, P_N direct minus balance, crossings).
    windows : dict volume name -> dict quantity -> (n_w,) window averages (and ``t_start``).
    trajectory_estimates : estimator results (``power.estimators``) when trajectories ran.
    stored_trajectories : dict name -> (n_store, n_t, N) arrays (weights: (n_store, n_t)).
    """

    model: Model
    time: np.ndarray
    fields: dict
    volumes: dict
    globals: dict
    diagnostics: dict = field(default_factory=dict)
    wall_time: float = 0.0
    warnings: list = field(default_factory=list)
    windows: dict = field(default_factory=dict)
    trajectory_estimates: dict | None = None
    stored_trajectories: dict | None = None
    samples: int = 0
    #: the run as given (its unit system is the result file's: ``bohmpower.save``)
    config: object = None
    #: seconds of run(): "setup", "observables" (at "nodes" quadrature nodes and the frames), "rest"
    #: (propagation, trajectories, health checks)
    timings: dict = field(default_factory=dict)

    def to_units(self, system: str | None = None):
        """The arrays in ``system`` ("atomic" or "device"; default: the run file's), each with its
        unit (`bohmpower.result_units.ResultInUnits`; groups fields, volumes, globals, windows,
        trajectory_estimates, stored_trajectories)."""
        from bohmpower.result_units import convert_result

        return convert_result(self, system or self.model.units, (
            "fields", "volumes", "globals", "windows", "trajectory_estimates",
            "stored_trajectories"))


def initial_state(model: Model, workers: int = 1) -> np.ndarray:
    """Psi0 on the N-d grid: orbitals' determinant/product, or a many-body eigenstate."""
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
        log.info("many-body state %d: energy %s", model.many_body_state,
                 model.units.quantity(energy, "energy", digits=10))
        return psi.astype(np.complex128, copy=False)
    return model.initial_state()


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
        self.model, self.warnings = build_model(atomic, command="exact", units=config.unit_system)
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
            fft_backend=numerics.fft_backend,
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

    def steps(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """Yield ``(step, t, psi)`` after every time step (and at step 0)."""
        psi = self.psi
        t = 0.0
        yield 0, t, psi
        for step in range(1, self.time_config.n_steps + 1):
            self.propagator.advance(psi, t, 1)
            t = step * self.dt
            yield step, t, psi

    def run(self, observers: tuple[Callable, ...] = ()) -> ExactResult:
        """Propagate to t_end: grid observables at every stored frame and at the window quadrature's
        nodes (``numerics.window_quadrature``), and exact Bohmian trajectories when the run asks.

        Without trajectories the propagator advances straight from one evaluation step to the next
        (fused half steps). Observers are called as ``observer(step, t, frame)`` after each stored
        frame.
        """
        start = _time.perf_counter()
        m = self.model
        tc = self.time_config
        frame_slots = {s: i for i, s in enumerate(tc.frame_steps)}
        frames = []
        health = HealthMonitor(m, self.dt)
        windows = self.windows()
        setup = FrameSetup(m, workers=self.workers,
                           fft_backend=m.config.numerics.fft_backend)
        traj = TrajectoryRun(self) if self.trajectories is not None else None
        evaluate = set(frame_slots) | windows.node_steps | windows.edge_steps
        stepper = self.steps() if traj is not None else self._visits(sorted(evaluate))
        spent = {"setup": _time.perf_counter() - start, "observables": 0.0, "nodes": 0,
                 "edge_nodes": 0}
        for step, t, psi in stepper:
            is_frame = step in frame_slots
            if is_frame or step in windows.node_steps:
                t_obs = _time.perf_counter()
                fr = grid_frame(psi, m, t, workers=self.workers, diagnostics=is_frame, setup=setup)
                windows.record(step, fr.volumes)
                spent["observables"] += _time.perf_counter() - t_obs
                spent["nodes"] += 0 if is_frame else 1
            elif step in windows.edge_steps:
                t_obs = _time.perf_counter()
                windows.record_edges(step, edge_terms(psi, m, t, setup))
                spent["observables"] += _time.perf_counter() - t_obs
                spent["edge_nodes"] += 1
            if traj is not None:
                traj.record(step, t, psi, frame_slots.get(step))
            if is_frame:
                health.check(step, t, psi, fr)
                frames.append(fr)
                for obs in observers:
                    obs(step, t, fr)
        wall = _time.perf_counter() - start
        result = collect_frames(m, frames)
        result.windows = windows.results()
        if traj is not None:
            result.trajectory_estimates, result.stored_trajectories, crossings = traj.results()
            result.diagnostics["crossings"] = crossings
            result.samples = traj.n_samples
        result.diagnostics.update(health.summary())
        result.wall_time = wall
        result.warnings = list(self.warnings) + health.warnings
        result.config = self.config
        spent["rest"] = wall - spent["setup"] - spent["observables"]
        result.timings = spent
        return result

    def _visits(self, targets: list[int]) -> Iterator[tuple[int, float, np.ndarray]]:
        """Yield ``(step, t, psi)`` at the given increasing steps (0 first), advancing in between."""
        psi = self.psi
        step = 0
        yield 0, 0.0, psi
        for target in targets:
            if target <= step:
                continue
            self.propagator.advance(psi, step * self.dt, target - step)
            step = target
            yield step, step * self.dt, psi

    @property
    def window_quadrature(self) -> str:
        return str(getattr(self.model.config.numerics, "window_quadrature", "newton_cotes"))

    @property
    def node_stride(self) -> int:
        """Node spacing in steps of the full observables in the "newton_cotes" window quadrature
        (``exact.quadrature``; ``numerics.window_node_phase``)."""
        return node_stride(self._phase_per_step, float(self.model.config.numerics.window_node_phase))

    @property
    def edge_node_stride(self) -> int:
        """Node spacing in steps of the sharp volumes' edge terms (``numerics.edge_node_phase``),
        at most :attr:`node_stride`."""
        phase = float(self.model.config.numerics.edge_node_phase)
        return min(node_stride(self._phase_per_step, phase), self.node_stride)

    @property
    def _phase_per_step(self) -> float:
        res = getattr(self.model, "resolution", None)
        return float(res.phase) if res is not None else 0.0

    def windows(self) -> ExactWindows:
        """The run's window accumulator (its node steps tell which steps need observables)."""
        m = self.model
        return ExactWindows([v.name for v in m.volumes], self.window_steps,
                            self.time_config.n_steps, self.dt, rule=self.window_quadrature,
                            stride=self.node_stride, edge_stride=self.edge_node_stride,
                            sharp=[v.name for v in m.volumes if v.sharp])

    @property
    def window_steps(self) -> int:
        return int(round(self.time_config.window_length / self.dt))

    @property
    def trajectories(self):
        return self.model.config.trajectories


class ExactWindows:
    """Window averages of the grid values over [t_s, t_s + T], from a quadrature on step times.

    ``power`` is (E_Omega(t_s + T) - E_Omega(t_s)) / T exactly (the window's end nodes); every other
    term is integrated by the window rule of :mod:`bohmpower.exact.quadrature` ("newton_cotes": a few
    nodes per window; "every_step": every step), with ``quadrature_error`` per window the sum over the
    power terms of the rule's error estimate (it bounds the error of each term and of the balance);
    ``quantum_nonlocal`` is the window balance, so
    power = field_work + interaction + quantum_flux + quantum_nonlocal + boundary_flux - absorbed
    holds for the window averages too.

    Two rules when ``edge_stride`` < ``stride`` (and the volumes in ``sharp`` exist): the edge terms
    of the sharp volumes (``observables.EDGE_TERMS``: ratios by rho at the edge points, which change
    on the time scale of a near-node crossing the edge) on nodes every ``edge_stride`` steps, from
    the cheap edge-slice evaluation at the steps ``edge_steps``; every other term on the nodes
    ``node_steps`` of the full evaluation, every ``stride`` steps.

    Without volumes there is nothing to average: no nodes, the run evaluates its frames only.
    """

    TERMS = ("field_work", "interaction", "quantum_flux", "boundary_flux", "absorbed",
             "particle_flux")
    #: Terms whose error estimates add up to ``quadrature_error`` (hartree/time).
    POWER_TERMS = ("field_work", "interaction", "quantum_flux", "boundary_flux", "absorbed")

    def __init__(self, names, window_steps: int, n_steps: int, dt: float,
                 rule: str = "newton_cotes", stride: int = 1, edge_stride: int | None = None,
                 sharp=()):
        self.names = list(names)
        self.window_steps = window_steps
        self.n_windows = n_steps // window_steps
        self.dt = dt
        self.rule = window_rule(window_steps, rule, stride)
        split = (rule == "newton_cotes" and edge_stride is not None and int(edge_stride) < stride
                 and any(n in self.names for n in sharp))
        self.edge_rule = window_rule(window_steps, rule, edge_stride) if split else self.rule
        self.sharp = [n for n in self.names if n in sharp] if split else []
        self.edge_terms = EDGE_TERMS if split else ()
        # no volumes, no window averages: no evaluation between the frames
        self._slots = self._slots_of(self.rule) if self.names else {}
        self._edge_slots = self._slots_of(self.edge_rule) if split else {}
        self.node_steps = set(self._slots)
        #: steps that need the edge evaluation only (the full nodes give the edge terms too)
        self.edge_steps = set(self._edge_slots) - self.node_steps
        n_nodes, n_edge = self.rule.steps.shape[0], self.edge_rule.steps.shape[0]
        self.values = {
            n: {q: np.zeros((self.n_windows,
                             n_edge if (n in self.sharp and q in self.edge_terms) else n_nodes))
                for q in self.TERMS + ("energy",)}
            for n in self.names}

    def _slots_of(self, rule) -> dict[int, list[tuple[int, int]]]:
        """step -> [(window, node index)]; shared window ends belong to two windows."""
        slots: dict[int, list[tuple[int, int]]] = {}
        for w in range(self.n_windows):
            for i, s in enumerate(rule.steps):
                slots.setdefault(int(w * self.window_steps + s), []).append((w, i))
        return slots

    def _split_term(self, name: str, q: str) -> bool:
        return name in self.sharp and q in self.edge_terms

    def record(self, step: int, volumes: dict) -> None:
        """Values of a full evaluation (``frame(...).volumes``) at ``step``."""
        for w, i in self._slots.get(step, ()):
            for name in self.names:
                vol, store = volumes[name], self.values[name]
                for q in self.TERMS + ("energy",):
                    if not self._split_term(name, q):
                        store[q][w, i] = vol[q]
        self.record_edges(step, volumes)

    def record_edges(self, step: int, volumes: dict) -> None:
        """The sharp volumes' edge terms at ``step`` (``observables.edge_terms``, or a full frame)."""
        for w, i in self._edge_slots.get(step, ()):
            for name in self.sharp:
                for q in self.edge_terms:
                    self.values[name][q][w, i] = volumes[name][q]

    def results(self) -> dict:
        T = self.window_steps * self.dt
        out = {}
        for name in self.names:
            v = self.values[name]

            def rule_of(q, name=name):
                return self.edge_rule if self._split_term(name, q) else self.rule

            d = {"t_start": np.arange(self.n_windows) * T,
                 "power": (v["energy"][:, -1] - v["energy"][:, 0]) / T}
            for q in self.TERMS:
                d[q] = v[q] @ rule_of(q).weights
            d["quantum_nonlocal"] = (d["power"] - d["field_work"] - d["interaction"]
                                     - d["quantum_flux"] - d["boundary_flux"] + d["absorbed"])
            d["quantum"] = d["quantum_flux"] + d["quantum_nonlocal"]
            d["quadrature_error"] = np.array(
                [sum(rule_of(q).error_estimate(v[q][w]) for q in self.POWER_TERMS)
                 for w in range(self.n_windows)])
            out[name] = d
        return out


class TrajectoryRun:
    """Exact Bohmian trajectories of one exact run, fed to the ensemble estimators.

    Initial configurations are drawn from |Psi0|^2 on the grid, one random stream per sample id;
    all worlds move together (they share Psi) but are accumulated in the fixed blocks of sample ids
    of ``power.recorder`` and merged in id order, so the estimates are the same however the ids
    would be split.
    """

    def __init__(self, solver: ExactSolver):
        from bohmpower.exact.trajectories import BohmianEnsemble, BohmianGuide
        from bohmpower.model.sampling import sample_configurations
        from bohmpower.power.recorder import MultiBlockRecorder, blocks_of, estimator_volumes

        m = solver.model
        tr = solver.trajectories
        self.time = solver.time_config
        self.window_steps = solver.window_steps
        self.n_samples = int(tr.count)
        self.n_store = int(min(tr.store or 0, self.n_samples))
        self.n_particles = m.n_particles
        self.grid_x = m.grid.x
        self.volumes = estimator_volumes(m.volumes, m.grid, with_global=False)
        ids = np.arange(self.n_samples)
        X0 = sample_configurations("grid", solver.psi, m.grid.x, int(tr.seed), ids)
        self.guide = BohmianGuide.from_model(m, workers=solver.workers,
                                             fft_backend=m.config.numerics.fft_backend)
        self.guide.update(solver.psi, 0.0)
        self.ensemble = BohmianEnsemble(self.guide, X0, units=m.units)
        identical = m.statistics == "fermion" and m.n_particles > 1
        # All blocks of the ensemble in one call per step; still one BlockSums per block of ids.
        self.recorder = MultiBlockRecorder(blocks_of(self.n_samples), self.volumes, self.time,
                                           self.window_steps, m.grid.x, self.n_store, identical)

    def record(self, step: int, t: float, psi: np.ndarray, frame_slot: int | None) -> None:
        if step > 0:
            self.guide.update(psi, t)
            self.ensemble.step(self.guide)
        self.recorder.record(step, self.ensemble.state)

    def results(self):
        """(estimates, stored trajectories, crossings): see ``power.recorder.merge_blocks``."""
        from bohmpower.power.recorder import merge_blocks

        return merge_blocks(self.recorder.finish(), self.volumes, self.time, self.window_steps,
                            self.grid_x, self.n_store, self.n_particles)


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
        self.units = getattr(model, "units", None)  # None: atomic (NumericalError's default)

    def check(self, step: int, t: float, psi: np.ndarray, fr) -> None:
        norm = fr.globals["norm"]
        if not np.all(np.isfinite(psi)) or not np.isfinite(norm):
            raise NumericalError(step, t, "NaN or infinity in the wavefunction: dt too large for "
                                 "the potential, or a singular potential on the grid", self.units)
        if self.norm0 is None:
            self.norm0 = norm
            self.energy0 = fr.globals["energy"]
        rel = abs(norm - self.norm0) / self.norm0
        if self.closed:
            self.max_norm_error = max(self.max_norm_error, rel)
            if rel > NORM_TOLERANCE:
                raise NumericalError(step, t, f"norm changed by {rel:.2e} on a closed grid: the "
                                     "propagator is unstable (reduce time.dt)", self.units)
        elif norm > self.norm0 * (1 + NORM_TOLERANCE):
            raise NumericalError(step, t, f"norm grew by {rel:.2e} with absorbing layers",
                                 self.units)
        if self.closed and self.static:
            drift = abs(fr.globals["energy"] - self.energy0) / max(abs(self.energy0), 1e-12)
            self.max_energy_drift = max(self.max_energy_drift, drift)
        edge = spectral_edge_weight(psi)
        self.max_spectral_edge = max(self.max_spectral_edge, edge)
        if edge > SPECTRAL_EDGE_TOLERANCE:
            raise NumericalError(step, t, f"{edge:.1e} of the probability sits in the top 10% of the "
                                 "grid's wavenumbers: the grid no longer resolves the largest momentum "
                                 "(increase grid.points)", self.units)
        if not self._edge_warned:
            n = fr.fields["density"]
            edge_density = max(n[0], n[-1]) / max(n.max(), 1e-300)
            if edge_density > 1e-6:
                self._edge_warned = True
                where = "the grid's seam (periodic wrap-around)" if self.closed else \
                    "the outer edge of the absorbing layers (absorption incomplete)"
                when = (self.units or ATOMIC).quantity(t, "time")
                msg = (f"t = {when}: density at {where} reached "
                       f"{edge_density:.1e} of its maximum")
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


#: Largest fraction of samples that --discard-bad-samples may drop before the run is refused:
#: discarded worlds sit near nodes, where the heavy tails of the quantum term live, so dropping
#: many of them biases the estimates.
MAX_DISCARD_FRACTION = 0.01


@dataclass
class CWResult:
    """A conditional-wavefunction run, in atomic units (``io.write_cw_result`` writes it)."""

    model: Model
    time: np.ndarray
    estimates: dict
    stored_trajectories: dict
    crossings: int
    discarded: list
    samples: int
    exchange: bool
    wall_time: float = 0.0
    warnings: list = field(default_factory=list)
    scheme: str = "zeroth_order"
    #: interacting scheme: the shared basis's per-step "rank" (eigenvalues of S kept), "norm" of the
    #: reconstructed Psi and "condition" of S, from a block this process ran (identical in every block)
    basis_diagnostics: dict | None = None
    #: the run as given (its unit system is the result file's: ``bohmpower.save``)
    config: object = None

    def to_units(self, system: str | None = None):
        """The arrays in ``system`` ("atomic" or "device"; default: the run file's), each with its
        unit (`bohmpower.result_units.ResultInUnits`; groups estimates, stored_trajectories)."""
        from bohmpower.result_units import convert_result

        return convert_result(self, system or self.model.units, ("estimates", "stored_trajectories"))


class CWSolver:
    """Conditional-wavefunction Monte Carlo (any N): worlds sampled from |Psi0|^2, each carrying
    one-particle conditional wavefunctions, run block by block of sample ids.

    Parameters
    ----------
    config : RunConfig (any unit system; a `run` file with [trajectories]).
    workers : FFT threads.
    discard_bad_samples : drop (and count) samples whose numerical health fails instead of
        stopping; refused above MAX_DISCARD_FRACTION of the samples.
    """

    def __init__(self, config, workers: int | None = None, discard_bad_samples: bool = False):
        from bohmpower.power.recorder import estimator_volumes

        self.config = config
        atomic = config.to_atomic() if config.units.system != "atomic" else config
        self.model, self.warnings = build_model(atomic, command="run", units=config.unit_system)
        self.warnings = list(self.warnings) + config.method_warnings()
        self.workers = workers if workers is not None else atomic.numerics.fft_workers
        self.time = atomic.time
        self.dt = atomic.time.dt
        self.window_steps = int(round(atomic.time.window_length / self.dt))
        tr = atomic.trajectories
        self.n_samples = int(tr.count)
        self.seed = int(tr.seed)
        self.n_store = int(min(tr.store or 0, self.n_samples))
        method = atomic.method
        self.exchange = bool(method.exchange) if method is not None else False
        self.scheme = method.scheme if method is not None else "zeroth_order"
        self.method = method
        self.basis_diagnostics: dict | None = None
        m = self.model
        self.kind = "slater" if m.statistics == "fermion" else "product"
        self.identical = m.statistics == "fermion" and m.n_particles > 1
        self.volumes = estimator_volumes(m.volumes, m.grid, with_global=True)
        self.discard_bad_samples = discard_bad_samples
        self.discarded: list[int] = []
        #: called as ``step_observer(first_id, step, n_steps)`` after every step of a block run by
        #: ``run_block`` (progress within a block: a block of a large-N run takes minutes)
        self.step_observer: Callable[[int, int, int], None] | None = None

    def run(self, progress: Callable[[int], None] | None = None, comm=None, checkpoint=None,
            resume: bool = False, max_wall_time: float | None = None,
            checkpoint_every: int | None = None, checkpoint_interval: float | None = None,
            stop_requested: Callable[[], bool] | None = None) -> CWResult | None:
        """Run every block of sample ids not already finished, and merge them on rank 0.

        Parameters
        ----------
        progress : called on rank 0 with the number of samples just finished (all ranks).
        comm : MPI communicator (``parallel.world_comm()``) or None for serial.
        checkpoint : ``checkpoint.Checkpoint`` or None. Finished blocks are written to it every
            ``checkpoint_every`` samples or ``checkpoint_interval`` seconds (default: each block).
        resume : reuse the blocks already in ``checkpoint`` (refused if it belongs to another run).
        max_wall_time : seconds; the run stops cleanly (checkpoint written, StoppedEarly) before a
            round of blocks would exceed it. ``stop_requested()`` (e.g. SIGTERM seen) does the same.

        Returns
        -------
        CWResult on rank 0, None on the other ranks.

        Notes
        -----
        Blocks are dealt round-robin; after each round the ranks agree (one allreduce) whether to
        stop, so no rank waits for another that has left. After each round rank 0 receives the
        round's blocks one at a time in id order and merges each at once (``_merge_round``), with
        the checkpoint's blocks read from disk when their turn comes: rank 0 holds a few blocks,
        not all of them, and the merge is the same sequence of operations as merging every block
        sorted by id (the same result to the bit, whatever the number of ranks).
        """
        from bohmpower.parallel import SerialComm, any_rank, my_blocks
        from bohmpower.checkpoint import resume_on_root
        from bohmpower.power.recorder import OrderedMerge, blocks_of

        comm = comm or SerialComm()
        start = _time.perf_counter()
        blocks = blocks_of(self.n_samples)

        def finished():
            keys = {(int(b[0]), int(b[-1])) for b in blocks}
            # checked now, loaded again when merged: {first id: (file, samples)}
            found = {first: f for (first, last), f in checkpoint.finished_blocks().items()
                     if (first, last) in keys}
            return found, sum(n for _, n in found.values())

        done, done_ids = resume_on_root(checkpoint, resume, comm, self.n_samples, finished,
                                        "samples")
        if progress is not None and done:
            getattr(progress, "skip", progress)(sum(n for _, n in done.values()))
        todo = [b for b in blocks if int(b[0]) not in done_ids]
        mine = my_blocks(todo, comm)
        # units of work: one block each (zeroth order), or all of a rank's blocks at once (the
        # interacting scheme: one shared basis guides them all, so it is propagated once per rank)
        # interacting scheme with several ranks: the basis's pair matrix is shared over the ranks, so
        # every rank steps it in lockstep, with or without blocks of its own
        if self.scheme != "interacting":
            units = [[b] for b in mine]
        elif comm.size > 1:
            units = [mine] if comm.allreduce(len(todo), op=_max_op()) else []
        else:
            units = [mine] if mine else []
        n_rounds = comm.allreduce(len(units), op=_max_op())
        # round of todo[k] (its owner is k % size, as my_blocks deals them)
        rounds = [k // comm.size if self.scheme != "interacting" else 0 for k in range(len(todo))]
        m = self.model
        merge = (OrderedMerge(self.volumes, self.time, self.window_steps, m.grid.x, self.n_store,
                              m.n_particles) if comm.rank == 0 else None)
        waiting = sorted(done)  # checkpoint blocks not merged yet (rank 0)
        n_local = 0
        pending: list = []
        last_flush = _time.perf_counter()
        busy = 0.0
        round_time = 0.0
        for i in range(n_rounds):
            elapsed = _time.perf_counter() - start
            stop = (stop_requested is not None and stop_requested()) or (
                max_wall_time is not None and elapsed + 1.2 * round_time > max_wall_time)
            if any_rank(stop, comm):
                self._flush(checkpoint, pending)
                raise StoppedEarly(self._stop_message(comm, n_local, done, checkpoint))
            t0 = _time.perf_counter()
            rs = []
            if i < len(units):
                def stop_now() -> bool:
                    late = max_wall_time is not None and _time.perf_counter() - start > max_wall_time
                    return late or (stop_requested is not None and stop_requested())

                try:
                    rs = self.run_blocks(units[i], comm=comm, stop_now=stop_now,
                                         checkpoint=checkpoint, resume=resume,
                                         save_interval=checkpoint_interval)
                except _UnitStopped as exc:
                    self._flush(checkpoint, pending)
                    again = ("--resume continues it from there" if exc.saved
                             else "it starts again on resume")
                    raise StoppedEarly(
                        self._stop_message(comm, n_local, done, checkpoint)
                        + f" (the interacting scheme's unit of {exc.samples} samples stopped at "
                        f"step {exc.step} of {self.time.n_steps}; {again})"
                    ) from None
                except NumericalError as exc:  # an engine's time stamp, in the run file's units
                    exc.in_units(self.model.units)
                    raise
                n_local += sum(r.sums.n_samples for r in rs)
                pending.extend(rs)
            round_time = max(round_time, _time.perf_counter() - t0)
            busy += _time.perf_counter() - t0
            n_pending = sum(r.sums.n_samples for r in pending)
            if checkpoint is not None and pending and (
                    (checkpoint_every is None and checkpoint_interval is None)
                    or (checkpoint_every is not None and n_pending >= checkpoint_every)
                    or (checkpoint_interval is not None
                        and _time.perf_counter() - last_flush >= checkpoint_interval)):
                self._flush(checkpoint, pending)
                last_flush = _time.perf_counter()
            if progress is not None:
                finished = comm.allreduce(
                    sum(len(b) for b in units[i]) if i < len(units) else 0, op=_sum_op())
                if comm.rank == 0:
                    progress(finished)
            self._merge_round([k for k, r in enumerate(rounds) if r == i], todo, rs, comm, merge,
                              waiting, done, checkpoint)
            del rs
        self._flush(checkpoint, pending)
        busy_all = comm.gather(busy, root=0)
        if comm.rank != 0:
            return None
        while waiting:
            merge.add(checkpoint.load_block(done[waiting.pop(0)][0]))
        estimates, stored, crossings = merge.finish()
        discarded = sorted(self.discarded)
        result = CWResult(model=m, time=np.asarray(self.time.frame_steps) * self.dt,
                          estimates=estimates, stored_trajectories=stored, crossings=crossings,
                          discarded=discarded, samples=self.n_samples, exchange=self.exchange,
                          wall_time=_time.perf_counter() - start, warnings=list(self.warnings),
                          scheme=self.scheme, basis_diagnostics=self.basis_diagnostics,
                          config=self.config)
        result.ranks = comm.size
        result.load_imbalance = (max(busy_all) / max(np.mean(busy_all), 1e-12)
                                 if busy_all else 1.0)
        return result

    @staticmethod
    def _merge_round(ks, todo, rs, comm, merge, waiting, done, checkpoint) -> None:
        """Merge on rank 0 the blocks todo[k] (k in ``ks``, increasing) finished this round, in id
        order, each received from its rank when its turn comes, with the checkpoint blocks that
        precede it (``waiting``: first ids, loaded from disk one at a time)."""
        from bohmpower.checkpoint import check_finite_block
        from bohmpower.parallel import to_root_in_order

        arriving = to_root_in_order([k % comm.size for k in ks], rs, comm)
        if merge is None:
            return
        for k, r in zip(ks, arriving):
            first = int(todo[k][0])
            while waiting and waiting[0] < first:
                merge.add(checkpoint.load_block(done[waiting.pop(0)][0]))
            check_finite_block(r, f"block of samples {r.sums.first_id}-{r.sums.last_id}")
            merge.add(r)

    @staticmethod
    def _flush(checkpoint, pending: list) -> None:
        if checkpoint is None:
            pending.clear()
            return
        for r in pending:
            checkpoint.save_block(r)
        pending.clear()

    def _stop_message(self, comm, n_local, done, checkpoint) -> str:
        from bohmpower.parallel import sum_over_ranks

        n_done = sum_over_ranks(n_local, comm) + sum(n for _, n in done.values())
        where = f"checkpoint in {checkpoint.dir}" if checkpoint is not None else "no checkpoint"
        return (f"stopped cleanly after {n_done} of {self.n_samples} samples ({where}); finish "
                "with the same command plus --resume")

    def _ensemble(self, X0: np.ndarray, ids: np.ndarray, comm=None):
        """The worlds of one block: zeroth-order CWs, or trajectories guided by the ICWF basis
        (whose pair matrix ``comm``'s ranks share)."""
        from bohmpower.cw.engine import CWEnsemble

        if self.scheme == "interacting":
            from bohmpower.cw.interacting import InteractingEnsemble

            mth = self.method
            return InteractingEnsemble(
                self.model, X0, mth.basis_size, self.seed, overlap_cutoff=mth.overlap_cutoff,
                norm_tolerance=mth.norm_tolerance, energy_tolerance=mth.energy_tolerance,
                sample_ids=ids, workers=self.workers,
                comm=comm if comm is not None and comm.size > 1 else None)
        return CWEnsemble(self.model, X0, exchange=self.exchange, workers=self.workers,
                          sample_ids=ids)

    def run_blocks(self, blocks: list, comm=None, stop_now: Callable[[], bool] | None = None,
                   checkpoint=None, resume: bool = False, save_interval: float | None = None) -> list:
        """BlockResults of a unit of work (module ``run``): blocks run one by one at zeroth order,
        together (one basis, their worlds side by side) in the interacting scheme, where with
        several ranks ``comm`` shares the basis's pair matrix (every rank calls, even with no
        block). ``stop_now()`` (SIGTERM seen, wall time reached) is asked every
        ``STOP_CHECK_STEPS`` steps of a joint unit, all ranks alike; when true the unit stops
        (``_UnitStopped``). With a ``checkpoint``, the unit's state is saved then, and every
        ``save_interval`` seconds (``checkpoint.UNIT_STATE_INTERVAL`` by default), and a run with
        ``resume`` continues from the saved step when every rank has one for the same step."""
        from bohmpower.checkpoint import UNIT_STATE_INTERVAL
        from bohmpower.parallel import SerialComm, any_rank

        if self.scheme != "interacting":
            return [self.run_block(ids) for ids in blocks]
        from bohmpower.model.sampling import sample_configurations
        from bohmpower.power.recorder import BlockRecorder

        m = self.model
        comm_all = comm or SerialComm()
        blocks = [np.asarray(b) for b in blocks]
        ids = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int64)
        edges = np.cumsum([0] + [b.size for b in blocks])
        unit = (checkpoint.unit_state(comm_all.rank, comm_all.size,
                                      [(int(b[0]), int(b[-1])) for b in blocks])
                if checkpoint is not None else None)
        refused = None
        try:
            saved = unit.load(m) if unit is not None and resume else None
        except BohmpowerError as exc:  # a state of another run: every rank stops alike
            saved, refused = None, exc
        # every rank continues from the same step, or none does (the basis steps in lockstep)
        seen = comm_all.allgather((saved[0] if saved is not None else None,
                                   None if refused is None else str(refused)))
        why = next((msg for _, msg in seen if msg is not None), None)
        if why is not None:
            raise refused if refused is not None else ConfigError("", why)
        steps = {step for step, _ in seen}
        if len(steps) != 1:
            log.warning("the ranks' saved states of the interacting scheme's units are at steps %s: "
                        "every unit starts again from its first step",
                        sorted(steps, key=lambda v: -1 if v is None else v))
            saved = None
        if saved is not None:
            first_step, objects = saved
            ens, recs = objects["ensemble"], objects["recorders"]
            ens.comm = comm if comm is not None and comm.size > 1 else None
            log.info("resuming the interacting scheme's unit of %d samples at step %d of %d",
                     ids.size, first_step, self.time.n_steps)
        else:
            first_step = 1
            X0 = (sample_configurations(self.kind, m.orbitals, m.grid.x, self.seed, ids)
                  if ids.size else np.zeros((0, m.n_particles)))
            recs = [BlockRecorder(b, self.volumes, self.time, self.window_steps, m.grid.x,
                                  self.n_store, self.identical, quantum_split=True) for b in blocks]
            ens = self._ensemble(X0, ids, comm)

        def record(step, state):
            for r, a, b in zip(recs, edges[:-1], edges[1:]):
                r.record(step, slice_state(state, slice(a, b)))

        def save(step) -> bool:
            shared, ens.comm = ens.comm, None  # a communicator is not state
            try:
                return unit.save(step, {"ensemble": ens, "recorders": recs}, m)
            finally:
                ens.comm = shared

        interval = UNIT_STATE_INTERVAL if save_interval is None else float(save_interval)
        last_save = _time.perf_counter()
        if first_step == 1:
            record(0, ens.state)
        for step in range(first_step, self.time.n_steps + 1):
            if step % STOP_CHECK_STEPS == 0 and step > first_step:
                if stop_now is not None and any_rank(stop_now(), comm_all):
                    ok = save(step) if unit is not None else False
                    raise _UnitStopped(int(ids.size), step,
                                       saved=not any_rank(not ok, comm_all))
                if unit is not None and any_rank(_time.perf_counter() - last_save >= interval,
                                                 comm_all):
                    save(step)
                    last_save = _time.perf_counter()
            ens.step()
            record(step, ens.state)
        self._keep_basis_diagnostics(ens)
        results = [r.finish() for r in recs]
        if unit is not None:
            # the blocks reach the checkpoint next (run's flush); a state left behind would be
            # refused as another set of blocks, never merged twice
            unit.drop()
        return results

    def _keep_basis_diagnostics(self, ens) -> None:
        if self.scheme == "interacting" and self.basis_diagnostics is None:
            self.basis_diagnostics = {"rank": np.asarray(ens.rank_history),
                                      "norm": np.asarray(ens.norm_history),
                                  "energy": np.asarray(ens.energy_history),
                                      "condition": np.asarray(ens.condition_history)}

    def run_block(self, ids: np.ndarray):
        """Propagate the worlds of one block of sample ids and return its ``BlockResult``."""
        from bohmpower.cw.engine import SampleFailure
        from bohmpower.model.sampling import sample_configurations
        from bohmpower.power.recorder import BlockRecorder

        m = self.model
        ids = np.asarray(ids)
        while True:
            X0 = sample_configurations(self.kind, m.orbitals, m.grid.x, self.seed, ids)
            rec = BlockRecorder(ids, self.volumes, self.time, self.window_steps, m.grid.x,
                                self.n_store, self.identical)
            try:
                ens = self._ensemble(X0, ids)
                rec.record(0, ens.state)
                for step in range(1, self.time.n_steps + 1):
                    ens.step()
                    rec.record(step, ens.state)
                    if self.step_observer is not None:
                        self.step_observer(int(ids[0]), step, self.time.n_steps)
                self._keep_basis_diagnostics(ens)
            except SampleFailure as exc:
                bad = int(exc.sample_id)
                if not self.discard_bad_samples:
                    raise NumericalError(
                        exc.step, exc.step * self.dt,
                        f"sample {bad}, electron {exc.particle}: {exc.cause}. Rerun with "
                        "--discard-bad-samples to drop such samples (counted, and refused above "
                        f"{MAX_DISCARD_FRACTION:.0%} of the samples), or refine time.dt / "
                        "grid.points", m.units) from None
                self.discarded.append(bad)
                if len(self.discarded) > MAX_DISCARD_FRACTION * self.n_samples:
                    raise NumericalError(
                        exc.step, exc.step * self.dt,
                        f"{len(self.discarded)} samples failed (last: sample {bad}, electron "
                        f"{exc.particle}: {exc.cause}), more than {MAX_DISCARD_FRACTION:.0%} of "
                        f"{self.n_samples}: discarding them would bias the estimates; refine "
                        "time.dt or grid.points", m.units) from None
                log.warning("sample %d discarded at step %d: %s", bad, exc.step, exc.cause)
                ids = ids[ids != bad]
                if ids.size == 0:
                    raise NumericalError(exc.step, exc.step * self.dt,
                                         "every sample of a block failed", m.units) from None
                continue
            return rec.finish()


#: Steps between the stop checks (SIGTERM, wall time) inside an interacting-scheme unit.
STOP_CHECK_STEPS = 10


class _UnitStopped(Exception):
    """An interacting-scheme unit was asked to stop (driver-internal, becomes StoppedEarly)."""

    def __init__(self, samples: int, step: int, saved: bool = False) -> None:
        super().__init__(f"stopped at step {step}")
        self.samples, self.step, self.saved = samples, step, saved


def slice_state(state, rows: slice):
    """The worlds ``rows`` of a TrajectoryState (a view per array)."""
    kw = {}
    for f in dataclasses.fields(state):
        v = getattr(state, f.name)
        kw[f.name] = v[rows] if isinstance(v, np.ndarray) and v.ndim >= 1 else v
    return type(state)(**kw)


def _max_op():
    from bohmpower.parallel import reduce_op

    return reduce_op("max")


def _sum_op():
    from bohmpower.parallel import reduce_op

    return reduce_op("sum")
