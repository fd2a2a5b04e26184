"""The open-system run: electrons injected from the reservoirs, each guided by its own wavefunction.

For non-interacting electrons the conditional wavefunction of an electron is exactly its own
single-particle wavefunction (the conditional potential has no partner terms), so every electron
present in any world is one row of a pool ``psi`` (P, 1, n_x) stepped by the conditional-wavefunction
propagator (:class:`bohmpower.cw.propagator.ConditionalPropagator`, Strang split step with the
absorbing rate), and its velocity comes from the same point derivatives and guidance ratios as in the
CW engine (:mod:`bohmpower.cw.guidance`). The trajectory integrator is the CW engine's second-order
predictor-corrector (midpoint positions for the potential, Heun for X).

Lifecycle of an electron (docs/devices.md): created at its injection time (``devices.injection``) as a
Gaussian packet at the injection point with a Bohmian position drawn from |psi|^2; stepped; removed the
step its trajectory enters an absorbing layer, counted by the side it came from and the side it left
by (transmitted, reflected). The number of electrons N(t) of a world fluctuates; ``particles.count``
caps it (a memory guard).

Observables: at every surface (the volumes' edges; the middle of the device without volumes) the net
number of trajectory crossings (left to right +1, right to left -1) in each of ``batches`` equal time
bins of [warm_up, t_end]; exits by origin and side in the same window; injections; N(t) at the frames;
every electron's fate (exit side) by its attempt period, energy cell and origin, for the shot noise
(:mod:`bohmpower.devices.noise`).

Steady-state energy and power per volume (docs/devices.md, "Local power"): after the warm-up, the
per-electron velocity v, quantum potential Q (``velocity_and_quantum_potential``), energy e_k and field
power f_k (``PointPotentials.evaluate``, as in the CW engine) of every electron are handed to the
closed-system estimator (:class:`bohmpower.power.estimators.EnsembleEstimator`), which needs a fixed
number of electrons per world. So every electron of a world gets its own slot for the whole run (the
slot count is the world's number of scheduled injections): before its injection a slot is parked at
the grid end of its reservoir, after its exit it stays where it left, with e = v = f = 0 in both
cases. Parked positions lie outside every volume (volume edges lie between the injection regions),
so a slot contributes only while its electron is in the device, and never crosses an edge while
parked. Two estimators run from the warm-up on: one window over the whole averaging time (the error
bars over worlds) and ``batches`` windows (batch means in time).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time as _time
from dataclasses import dataclass, field

import numpy as np

from bohmpower.config import AUTO_WARM_UP, Packet
from bohmpower.cw.engine import (DEFAULT_SPECTRAL_EVERY, SPECTRAL_EDGE_TOLERANCE,
                                 propagator_arguments, spectral_edge_weights, top_wavenumbers)
from bohmpower.cw.guidance import PointPotentials, plain_ratios, velocity_and_quantum_potential
from bohmpower.cw.propagator import ConditionalPropagator
from bohmpower.errors import ConfigError, NumericalError
from bohmpower.model.initial import packet
from bohmpower.model.sampling import sample_rng
from bohmpower.model.volume import Volume
from bohmpower.power.estimators import EnsembleEstimator
from bohmpower.units import BOLTZMANN_HARTREE_PER_K

from .injection import LEFT, RIGHT, Injection, Reservoir, packet_transmission
from .landauer import device_potential, fermi, landauer_current, transmission
from .noise import counted_periods, fano_factor, fano_model, fano_quantum

__all__ = ["OpenEnsemble", "OpenResult", "OpenSolver", "build_open_model", "describe_open",
           "surfaces_of"]

logger = logging.getLogger(__name__)

#: The lead potential over an injection region may vary by at most this fraction of E_F.
LEAD_FLATNESS = 1e-3
#: Largest relative difference between the Landauer currents of the grid-sampled and of the
#: continuum potential before the run warns that the potential is not resolved.
GRID_TOLERANCE = 0.02
#: Grid spacings the soft-Coulomb core (the softening length) should span (``build_open_model``).
SOFTENING_SPACINGS = 4.0
#: Worlds stepped together (one pool of electrons).
DEFAULT_BLOCK = 64


def _stand_in(config):
    """The run with four distinguishable stand-in packets (the slowest and fastest injected packet of
    each side), so that ``build_model`` applies its resolution, time-step and absorber rules to the
    packets the reservoirs will inject."""
    r = config.reservoirs
    m = config.particles.mass
    us = config.unit_system
    d_e = (r.energy_max - r.energy_min) / r.energy_cells
    ks = []
    for e in (r.energy_min + 0.5 * d_e, r.energy_max - 0.5 * d_e):
        k_at = (2.0 * m * us.to_atomic(e, "energy")) ** 0.5
        ks.append(us.from_atomic(k_at, "wavenumber"))
    packets = tuple(Packet(x, r.packet_width, s * k) for x, s in ((r.x_left, 1), (r.x_right, -1))
                    for k in ks)
    return dataclasses.replace(
        config,
        particles=dataclasses.replace(config.particles, count=len(packets),
                                      statistics="distinguishable"),
        initial=dataclasses.replace(config.initial, packet=packets, train=None, eigenstate=()),
    )


def build_open_model(config):
    """Model (grid, U0, drives, absorber; resolution rules applied) and injection of an open run.

    Returns
    -------
    model : bohmpower.model.Model
    injection : Injection
    warnings : list of str
    """
    from bohmpower.model import build_model

    if config.reservoirs is None:
        raise ConfigError("reservoirs", "not an open-system run (no [reservoirs] section)")
    us = config.unit_system
    model, warnings = build_model(_stand_in(config), "run", units=us)
    # what build_model says about the stand-in packets themselves is not about this run
    warnings = [w for w in warnings if not w.startswith("initial.packet")]
    atomic = config.to_atomic()
    r = atomic.reservoirs
    kt = BOLTZMANN_HARTREE_PER_K * r.temperature
    t_last = float(atomic.time.t_end)
    res = []
    for side, x in ((LEFT, r.x_left), (RIGHT, r.x_right)):
        span = np.linspace(x - 3 * r.packet_width, x + 3 * r.packet_width, 61)
        u = _potential(model, span, t_last)
        if np.ptp(u) > LEAD_FLATNESS * r.fermi_energy:
            key = "reservoirs.x_left" if side == LEFT else "reservoirs.x_right"
            raise ConfigError(key, f"the potential varies by {us.quantity(float(np.ptp(u)), 'energy')} "
                              "over the injection region (centre +/- 3 packet_width): the lead must be "
                              "flat there (move the injection point or the linear_drop's x_left/x_right)")
        u_s = float(_potential(model, np.array([x]), t_last)[0])
        res.append(Reservoir(side, u_s, u_s + r.fermi_energy, kt, float(x)))
    inj = Injection(tuple(res), float(r.energy_max), int(r.energy_cells), float(r.packet_width),
                    float(model.mass), float(r.energy_min))
    inter = atomic.interaction
    dx = float(model.grid.dx)
    if inter.kind == "soft_coulomb" and inter.softening < SOFTENING_SPACINGS * dx:
        warnings.append(
            f"interaction.soft_coulomb.softening = {us.quantity(inter.softening, 'length')} spans "
            f"{inter.softening / dx:.2g} grid spacings, fewer than {SOFTENING_SPACINGS:g}: the pair "
            "potential's core is cut off by the grid, and the conditional wavefunctions pick up "
            "energy that shows in the quantum term (measured on the test device of docs/devices.md, "
            "whole-device P_quantum: 3 standard errors off at 2.5 spacings, 6 at 1); use more "
            f"grid.points (>= {2 * math.ceil(SOFTENING_SPACINGS * model.grid.n_x * dx / inter.softening / 2)}) "
            "or a longer softening")
    return model, inj, warnings


def _potential(model, x, t):
    u = np.asarray(model.u0_at(x), dtype=float).copy()
    for d in model.drives:
        u += float(d.profile(t)) * np.asarray(d.potential(x), dtype=float)
    return u


def surfaces_of(model, injection: Injection) -> np.ndarray:
    """Surfaces where the current is counted: every volume edge, or the middle of the device."""
    lo = injection.reservoirs[LEFT].x_inject + 3 * injection.width
    hi = injection.reservoirs[RIGHT].x_inject - 3 * injection.width
    edges = sorted({e for v in model.volumes for e in (v.x_min, v.x_max)})
    if not edges:
        return np.array([0.5 * (lo + hi)])
    for i, v in enumerate(model.volumes):
        for name in ("x_min", "x_max"):
            e = getattr(v, name)
            if not lo < e < hi:
                us = model.units
                raise ConfigError(f"volume[{i}].{name}", f"{us.quantity(e, 'length')}: in an open "
                                  "run every volume edge must lie between the injection regions "
                                  f"({us.interval(lo, hi, 'length')}), where the current is counted")
    return np.array(edges, dtype=float)


#: The volume over the whole device (between the injection regions) the power estimators add.
DEVICE_VOLUME = "whole_device"


def power_volumes(model, injection: Injection) -> list:
    """The run's volumes and ``whole_device``, [x_L + 3 width, x_R - 3 width] (sharp edges)."""
    lo = injection.reservoirs[LEFT].x_inject + 3 * injection.width
    hi = injection.reservoirs[RIGHT].x_inject - 3 * injection.width
    vols = list(model.volumes)
    if any(v.name == DEVICE_VOLUME for v in vols):
        raise ConfigError("volume.name", f"{DEVICE_VOLUME!r} is the name of the whole device in an "
                          "open run (the power estimators add it): rename the volume")
    return vols + [Volume(DEVICE_VOLUME, float(lo), float(hi))]


def power_estimators(volumes, dt: float, n_steps: int, warm_up: float, n_batches: int,
                     transient_steps: int | None = None):
    """The steady-state estimators of an open run (module Notes), and with ``transient_steps`` the
    transient one (frames and windows every ``transient_steps`` steps from t = 0).

    Returns
    -------
    start_step : int
        The step the averaging starts at (the last step at or before the warm-up).
    power_steps : int
        Steps averaged: ``n_batches`` whole batches (a remainder of fewer than n_batches steps at
        the end is dropped).
    estimators : dict
        ``whole`` (one window over the averaging time) and ``batches`` (n_batches windows, frames
        at the batch edges).
    """
    start = min(n_steps - 1, int(np.floor(warm_up / dt + 1e-9)))
    w_batch = max(1, (n_steps - start) // n_batches)
    steps = w_batch * n_batches
    est = {
        "whole": EnsembleEstimator(volumes, dt, steps, steps, steps),
        "batches": EnsembleEstimator(volumes, dt, steps, w_batch, w_batch),
    }
    if transient_steps:
        est["transient"] = EnsembleEstimator(volumes, dt, n_steps, transient_steps, transient_steps)
    return start, steps, est


def is_transient(model) -> bool:
    """A run with a time-dependent bias (a ``turn_on`` profile): the transient is recorded."""
    return any(d.time_profile.kind != "constant" for d in model.drives)


def drive_drops(model, injection: Injection) -> np.ndarray:
    """Each drive's potential drop g_i(x_L) - g_i(x_R) between the injection points [hartree]."""
    ends = np.array([r.x_inject for r in injection.reservoirs])
    return np.array([float(np.subtract(*np.asarray(d.potential(ends), dtype=float)))
                     for d in model.drives])


def ramo_weights(model, injection: Injection, x: np.ndarray) -> np.ndarray:
    """The Ramo-Shockley weighting of the device's electrodes at positions x [1/bohr].

    The leads are flat (screened), so the applied field lives between them, and the field of unit
    bias is the weighting field: w(x) = sum_i F_i(x) / V with F_i = q E_i at full bias (the drives'
    force shapes) and V = sum_i [g_i(x_L) - g_i(x_R)] their potential drop between the injection
    points (docs/devices.md, "Transients"). An electron at X moving at v induces the particle current
    w(X) v in the external circuit, and int w dx = 1 from lead to lead. Zero without a bias.
    """
    x = np.asarray(x, dtype=float)
    v = float(np.sum(drive_drops(model, injection)))
    if not model.drives or v == 0:
        return np.zeros_like(x)
    return sum(np.asarray(d.force(x), dtype=float) for d in model.drives) / v


def steady_state_time(model, injection: Injection, t: float, n_x: int = 4001) -> float:
    """Estimate of when the device is in steady state [a.u. time]: the longest classical passage of a
    cell-centre electron (docs/devices.md, "Steady state").

    An electron of cell j from side s moves at v(x) = sqrt(2 (E_sj - U(x))/m); its passage is the time
    to the other injection point, or, where it meets a classical turning point, there and back to its
    own injection point. Once every cell's passage has ended, the in- and outgoing crossings of every
    cell balance at every surface. (Tunnelling packets turn before the classical point and spread, so
    this is an estimate, not a bound.)
    """
    left, right = injection.reservoirs
    x = np.linspace(left.x_inject, right.x_inject, n_x)
    u = _potential(model, x, t)
    h = x[1] - x[0]
    worst = 0.0
    for side, res in ((LEFT, left), (RIGHT, right)):
        path_u = u if side == LEFT else u[::-1]
        for e_kin in injection.kinetic():
            ke = res.band_bottom + e_kin - path_u
            stop = np.flatnonzero(ke <= 0)
            end = stop[0] if stop.size else ke.size
            v = np.sqrt(2.0 * np.maximum(ke[:end], 1e-300) / model.mass)
            tof = float(np.sum(h / v))
            worst = max(worst, 2.0 * tof if stop.size else tof)
    # a bias switched on: the passages start when it is fully on
    t_on = max((d.time_profile.t_on for d in model.drives if d.time_profile.kind == "turn_on"),
               default=0.0)
    return worst + float(t_on)


_POOL = ("psi", "X", "v", "world", "side", "slot", "Q", "period", "cell")


def transient_steps(frame_steps) -> int:
    """Steps between frames (the transient record's window)."""
    f = np.asarray(frame_steps, dtype=int)
    return int(f[1] - f[0]) if f.size > 1 else 1


class OpenEnsemble:
    """A block of worlds of an open system, all their electrons in one pool (module Notes).

    Parameters
    ----------
    model : Model
        From :func:`build_open_model` (atomic units).
    injection : Injection
    sample_ids : ndarray of int
        World ids; world b draws its injections from ``sample_rng(seed, sample_ids[b])``.
    seed : int
    n_steps : int
    warm_up, n_batches :
        The averaging window [warm_up, t_end] and its number of batches.
    surfaces : ndarray
        Positions where crossings are counted [bohr].
    max_electrons : int
        Largest N a world may hold at once.
    frame_steps : sequence of int
        Steps at which N(t) is recorded.
    """

    def __init__(self, model, injection: Injection, sample_ids, seed: int, n_steps: int,
                 warm_up: float, n_batches: int, surfaces, max_electrons: int, frame_steps,
                 workers: int = 1, dt: float | None = None, volumes=(),
                 transient: bool = False) -> None:
        self.model = model
        self.inj = injection
        self.ids = np.asarray(sample_ids, dtype=int)
        self.n_worlds = self.ids.size
        self.dt = float(model.config.time.dt if dt is None else dt)
        self.n_steps = int(n_steps)
        self.t_end = self.n_steps * self.dt
        self.warm_up = float(warm_up)
        self.n_batches = int(n_batches)
        self.surfaces = np.asarray(surfaces, dtype=float)
        self.max_electrons = int(max_electrons)
        self.frame_steps = np.asarray(frame_steps, dtype=int)
        self.x = np.asarray(model.grid.x, dtype=float)
        width = float(model.absorber.width)
        self.lo, self.hi = float(model.grid.x_min) + width, float(model.grid.x_max) - width
        self.prop = ConditionalPropagator(**propagator_arguments(model, self.dt, workers))
        self._owner = np.zeros(1, dtype=np.int64)
        #: Electrons of a world interact (zeroth-order conditional potentials, module Notes).
        self.interacting = self.prop.w is not None
        # the injections of every world, merged in time order
        sched = [injection.schedule(sample_rng(seed, int(i)), self.t_end) for i in self.ids]
        world = np.concatenate([np.full(s["time"].size, b) for b, s in enumerate(sched)])
        cat = {k: np.concatenate([s[k] for s in sched]) for k in ("time", "side", "cell", "x0")}
        order = np.argsort(cat["time"], kind="stable")
        self.queue = {k: v[order] for k, v in cat.items()}
        self.queue["world"] = world[order]
        # each electron's slot in its world (order of injection), for the power estimators
        qw = self.queue["world"]
        slot = np.zeros(qw.size, dtype=int)
        per_world = np.bincount(qw, minlength=self.n_worlds)
        for b in range(self.n_worlds):
            slot[qw == b] = np.arange(per_world[b])
        self.queue["slot"] = slot
        # each electron's attempt period [k t0, (k + 1) t0): one attempt per cell (devices.noise)
        self.queue["period"] = np.floor(self.queue["time"] / injection.period).astype(int)
        self.n_periods = int(np.ceil(self.t_end / injection.period)) + 1
        self._next = 0
        self._k = {s: injection.wavenumbers(s) for s in (LEFT, RIGHT)}
        # the pool: rows 0 .. n-1 live
        cap = 64
        self.psi = np.zeros((cap, 1, self.x.size), dtype=complex)
        self.X = np.zeros(cap)
        self.v = np.zeros(cap)
        self.world = np.zeros(cap, dtype=int)
        self.side = np.zeros(cap, dtype=int)
        self.slot = np.zeros(cap, dtype=int)
        self.Q = np.zeros(cap)
        self.period = np.zeros(cap, dtype=int)
        self.cell = np.zeros(cap, dtype=int)
        self.n = 0
        #: Transient record (a time-dependent bias): the third power estimator, from t = 0 with
        #: windows between frames, and the Ramo-Shockley current (module Notes).
        self.transient = bool(transient)
        self._setup_power(volumes, per_world)
        nb, ns = self.n_worlds, self.surfaces.size
        n_bins = max(0, self.frame_steps.size - 1)
        #: Net crossings of every surface between consecutive frames, from t = 0.
        self.frame_crossings = np.zeros((nb, ns, n_bins), dtype=np.int64)
        #: int of the Ramo-Shockley current over each frame interval (trapezoid on the steps).
        self.ramo = np.zeros((nb, n_bins))
        self._ramo_prev = np.zeros(nb)
        self.crossings = np.zeros((nb, ns, self.n_batches), dtype=np.int64)
        self.exits = np.zeros((nb, 2, 2), dtype=np.int64)       # window: [origin, exit side]
        self.exits_total = np.zeros((nb, 2, 2), dtype=np.int64)
        self.injected = np.zeros((nb, 2), dtype=np.int64)       # window
        self.injected_total = np.zeros((nb, 2), dtype=np.int64)
        # fates by attempt period: [world, period, cell, origin, exit side]; undecided (lost, or
        # still present at t_end): [world, period, origin]
        self.fates = np.zeros((nb, self.n_periods, injection.n_cells, 2, 2), dtype=np.int64)
        self.undecided = np.zeros((nb, self.n_periods, 2), dtype=np.int64)
        self.electrons = np.zeros((self.frame_steps.size, nb))
        self.max_present = 0
        self.lost = 0  # electrons removed for a non-finite velocity
        self.step_index = 0
        self.timings = {"propagate": 0.0, "guidance": 0.0, "bookkeeping": 0.0}
        self._top = top_wavenumbers(self.x.size)
        #: Largest mean spectral-edge weight of the electrons seen at a check (``_check_spectrum``).
        self.max_spectral_edge = 0.0

    # ------------------------------------------------------------------ pool
    def _grow(self, need: int) -> None:
        cap = self.psi.shape[0]
        if need <= cap:
            return
        new = max(need, 2 * cap)
        for name in _POOL:
            old = getattr(self, name)
            arr = np.zeros((new,) + old.shape[1:], dtype=old.dtype)
            arr[:cap] = old
            setattr(self, name, arr)

    def _velocity(self, psi, X, with_q: bool = False):
        values, d1, d2 = self.prop.derivatives(psi, X[:, None], owner_rows=self._owner)
        r1, r2 = plain_ratios(values, d1, d2)
        v, q = velocity_and_quantum_potential(r1, r2, self.prop.mass)
        return (v[:, 0], q[:, 0]) if with_q else v[:, 0]

    # ------------------------------------------------------------------ power estimators
    def _setup_power(self, volumes, per_world) -> None:
        """Slots and the two estimators (module Notes); nothing without volumes."""
        self.volumes = list(volumes)
        self.power = None
        if not self.volumes:
            return
        n_slots = max(1, int(per_world.max()) if per_world.size else 1)
        # parked positions: the grid end of each slot's reservoir (outside every volume)
        # (slots a world never fills stay parked at the left end)
        self.slot_X = np.full((self.n_worlds, n_slots), float(self.model.grid.x_min))
        q = self.queue
        ends = np.array([float(self.model.grid.x_min), float(self.model.grid.x_max) -
                         float(self.model.grid.dx)])
        self.slot_X[q["world"], q["slot"]] = ends[q["side"]]
        self.potentials = PointPotentials.from_model(self.model)
        #: Pair energy gained (injection) or lost (absorption) by each slot since the last record.
        self.slot_jump = np.zeros_like(self.slot_X)
        self.start_step, self.power_steps, self.power = power_estimators(
            self.volumes, self.dt, self.n_steps, self.warm_up, self.n_batches,
            transient_steps(self.frame_steps) if self.transient else None)
        for est in self.power.values():
            est.begin_block(self.ids)

    def _record_power(self, t: float) -> None:
        """Hand the state at t (step ``step_index``) to the estimators, from the warm-up on."""
        if self.power is None:
            return
        jump, self.slot_jump = self.slot_jump, np.zeros_like(self.slot_jump)
        k = self.step_index - self.start_step
        steady = 0 <= k <= self.power_steps
        if not (steady or self.transient):
            return
        shape = self.slot_X.shape
        v = np.zeros(shape)
        e = np.zeros(shape)
        f = np.zeros(shape)
        c = np.zeros(shape)
        n = self.n
        if n:
            w, s = self.world[:n], self.slot[:n]
            # the electrons present, world by world, padded to the largest world (module Notes)
            rank, width = self._rank_in_world()
            pad = np.zeros((self.n_worlds, width))
            Xp, vp, Qp = pad.copy(), pad.copy(), pad.copy()
            Xp[w, rank], vp[w, rank], Qp[w, rank] = self.X[:n], self.v[:n], self.Q[:n]
            present = np.zeros((self.n_worlds, width), dtype=bool)
            present[w, rank] = True
            ev = self.potentials.evaluate(Xp, vp, Qp, t, present=present)
            v[w, s] = self.v[:n]
            e[w, s] = ev["e"][w, rank]
            f[w, s] = ev["field_power"][w, rank]
            c[w, s] = ev["pair_power"][w, rank]
        for name, est in self.power.items():
            if name == "transient" or steady:  # the transient one counts steps from t = 0
                est.record(self.step_index if name == "transient" else k, self.slot_X, v, e, f,
                           pair_power=c, energy_jump=jump if self.interacting else None)
        if self.transient:
            self._record_ramo()

    def _record_ramo(self) -> None:
        """Add the step that ends now to the integral of the Ramo-Shockley current of its frame
        interval: per world, I_RS = sum_k w(X_k) v_k (``ramo_weights``), trapezoid in time."""
        n = self.n
        now = np.zeros(self.n_worlds)
        if n:
            np.add.at(now, self.world[:n], ramo_weights(self.model, self.inj, self.X[:n])
                      * self.v[:n])
        i = self.step_index
        if i > 0:
            b = int(np.searchsorted(self.frame_steps, i, side="left")) - 1
            if 0 <= b < self.ramo.shape[1]:
                self.ramo[:, b] += 0.5 * self.dt * (self._ramo_prev + now)
        self._ramo_prev = now

    def _rank_in_world(self) -> tuple[np.ndarray, int]:
        """Each live row's index among the live rows of its world, and the largest world's count."""
        w = self.world[: self.n]
        order = np.argsort(w, kind="stable")
        counts = np.bincount(w, minlength=self.n_worlds)
        starts = np.cumsum(counts) - counts
        rank = np.empty(w.size, dtype=int)
        rank[order] = np.arange(w.size) - starts[w[order]]
        return rank, max(1, int(counts.max()) if counts.size else 1)

    def _pair_jump(self, rows: np.ndarray, X_rows: np.ndarray, sign: float) -> None:
        """Book on the partners of ``rows`` (same world, still present) the pair energy
        sign * (1/2) W(X_k - X_j) that appears (injection, +) or disappears (absorption, -)."""
        if self.power is None or not self.interacting or rows.size == 0:
            return
        n = self.n
        others = np.ones(n, dtype=bool)
        others[rows] = False
        for j, xj in zip(rows, X_rows, strict=True):
            k = np.flatnonzero(others & (self.world[:n] == self.world[j]))
            if k.size:
                half_w = 0.5 * np.asarray(self.potentials.w(self.X[k] - xj), dtype=float)
                np.add.at(self.slot_jump, (self.world[k], self.slot[k]), sign * half_w)

    def power_sums(self) -> dict:
        """The estimators' block sums (``BlockSums``), to merge in block order."""
        return {name: est.end_block() for name, est in (self.power or {}).items()}

    def _inject(self, t: float) -> None:
        q = self.queue
        j = int(np.searchsorted(q["time"], t, side="right"))
        i0 = self._next
        if j <= i0:
            return
        self._next = j
        m = j - i0
        self._grow(self.n + m)
        rows = slice(self.n, self.n + m)
        side = q["side"][i0:j]
        cell = q["cell"][i0:j]
        k = np.where(side == LEFT, self._k[LEFT][cell], self._k[RIGHT][cell])
        centre = np.array([r.x_inject for r in self.inj.reservoirs])[side]
        dx = float(self.model.grid.dx)
        for r, (c, kk) in enumerate(zip(centre, k, strict=True)):
            p = packet(self.x, c, self.inj.width, kk)
            p /= np.sqrt(np.sum(np.abs(p) ** 2) * dx)
            self.psi[self.n + r, 0] = p
        self.X[rows] = q["x0"][i0:j]
        self.world[rows] = q["world"][i0:j]
        self.side[rows] = side
        self.slot[rows] = q["slot"][i0:j]
        self.period[rows] = q["period"][i0:j]
        self.cell[rows] = cell
        np.add.at(self.injected_total, (q["world"][i0:j], side), 1)
        if t > self.warm_up:
            np.add.at(self.injected, (q["world"][i0:j], side), 1)
        self.v[rows], self.Q[rows] = self._velocity(self.psi[rows], self.X[rows], with_q=True)
        self.n += m
        new = np.arange(self.n - m, self.n)
        self._pair_jump(new, self.X[new], +1.0)

    def _remove(self, gone: np.ndarray) -> None:
        """Drop the rows ``gone`` (bool over the live rows), keeping the live rows contiguous."""
        keep = np.flatnonzero(~gone)
        n = keep.size
        if n == self.n:
            return
        for name in _POOL:
            arr = getattr(self, name)
            arr[:n] = arr[keep]
        self.n = n

    # ------------------------------------------------------------------ stepping
    def step(self) -> None:
        """Inject what is due at t, then advance every electron from t to t + dt."""
        t = self.step_index * self.dt
        self._inject(t)
        t_new = t + self.dt
        self.step_index += 1
        n = self.n
        if n:
            psi, X, v = self.psi[:n], self.X[:n], self.v[:n]
            dt = self.dt
            a = _time.perf_counter()
            if self.interacting:
                self.prop.step_pool(psi, t, self.world[:n], X + 0.5 * dt * v, self.n_worlds)
            else:
                self.prop.step(psi, t, self._owner, (X + 0.5 * dt * v)[:, None])
            b = _time.perf_counter()
            v_star = self._velocity(psi, X + dt * v)
            X_new = X + 0.5 * dt * (v + v_star)
            bad = ~np.isfinite(X_new)
            X_eval = np.where(bad, self.x[0], X_new)
            v_new, q_new = self._velocity(psi, X_eval, with_q=True)
            c = _time.perf_counter()
            self.timings["propagate"] += b - a
            self.timings["guidance"] += c - b
            bad |= ~np.isfinite(v_new) | ~np.isfinite(q_new)
            ok = ~bad
            in_window = t_new > self.warm_up + 1e-9 * self.dt
            fb = int(np.searchsorted(self.frame_steps, self.step_index, side="left")) - 1
            if in_window:
                span = (self.t_end - self.warm_up) / self.n_batches
                batch = min(self.n_batches - 1,
                            max(0, int(np.ceil((t_new - self.warm_up) / span - 1e-9)) - 1))
            for si, s in enumerate(self.surfaces):
                right = ok & (X < s) & (X_new >= s)
                left = ok & (X >= s) & (X_new < s)
                if right.any() or left.any():
                    net = np.bincount(self.world[:n][right], minlength=self.n_worlds) - \
                        np.bincount(self.world[:n][left], minlength=self.n_worlds)
                    if 0 <= fb < self.frame_crossings.shape[2]:
                        self.frame_crossings[:, si, fb] += net
                    if in_window:
                        self.crossings[:, si, batch] += net
            out_l = ~bad & (X_new <= self.lo)
            out_r = ~bad & (X_new >= self.hi)
            for exit_side, out in ((LEFT, out_l), (RIGHT, out_r)):
                if out.any():
                    idx = (self.world[:n][out], self.side[:n][out], exit_side)
                    np.add.at(self.exits_total, idx, 1)
                    if in_window:
                        np.add.at(self.exits, idx, 1)
                    np.add.at(self.fates, (self.world[:n][out], self.period[:n][out],
                                           self.cell[:n][out], self.side[:n][out], exit_side), 1)
            if bad.any():
                np.add.at(self.undecided, (self.world[:n][bad], self.period[:n][bad],
                                           self.side[:n][bad]), 1)
            self.lost += int(bad.sum())
            X[:] = np.where(bad, X, X_new)
            v[:] = v_new
            self.Q[:n] = q_new
            gone = bad | out_l | out_r
            if self.power is not None:
                # exits and losses stay parked where they are now, e = 0 from the next record on
                self.slot_X[self.world[:n], self.slot[:n]] = X
                rows = np.flatnonzero(gone)
                self._pair_jump(rows, X[rows], -1.0)
            self._remove(gone)
            self.timings["bookkeeping"] += _time.perf_counter() - c
        counts = np.bincount(self.world[: self.n], minlength=self.n_worlds)
        peak = int(counts.max()) if counts.size else 0
        self.max_present = max(self.max_present, peak)
        if peak > self.max_electrons:
            raise ConfigError("particles.count", f"a world holds {peak} electrons at once, more than "
                              f"particles.count = {self.max_electrons} (in an open run the largest "
                              "number of electrons present at once); raise it")
        if self.step_index % DEFAULT_SPECTRAL_EVERY == 0:
            self._check_spectrum(t_new)
        self._record_power(t_new)
        hit = np.flatnonzero(self.frame_steps == self.step_index)
        if hit.size:
            self.electrons[hit[0]] = counts

    def _check_spectrum(self, t: float) -> None:
        """The CW engine's resolution check: the mean over the electrons present of the fraction of
        |psi(k)|^2 in the top 10 % of the grid's wavenumbers must stay below
        ``SPECTRAL_EDGE_TOLERANCE``. Weight there makes the velocity field j/rho oscillate from one
        grid point to the next, and trajectories stall in it (measured: a GaAs double barrier at
        dt = 0.5 fs, where the grid's largest kinetic phase was 12 rad per step, passed no electron
        through the well while the wavefunctions did)."""
        n = self.n
        if not n:
            return
        edge = spectral_edge_weights(self.psi[:n, 0], self._top)
        mean = float(np.mean(edge))
        self.max_spectral_edge = max(self.max_spectral_edge, mean if np.isfinite(mean) else 0.0)
        if np.isfinite(mean) and mean <= SPECTRAL_EDGE_TOLERANCE:
            return
        worst = int(np.nanargmax(np.where(np.isfinite(edge), edge, np.inf)))
        side = ("left", "right")[int(self.side[worst])]
        raise NumericalError(
            self.step_index, t,
            f"the electrons' wavefunctions carry {mean:.3g} of their weight (mean over the {n} "
            f"present) in the top 10 % of the grid's wavenumbers, above {SPECTRAL_EDGE_TOLERANCE:g} "
            f"(worst: world {int(self.ids[self.world[worst]])}, electron {int(self.slot[worst])} of "
            f"that world, energy cell {int(self.cell[worst])} of the {side} reservoir): the velocity "
            "field is no longer resolved. Likely cause: a time step too long for the grid, which "
            "pumps weight to the cut-off at sharp potentials; if `bohmpower check` warns that the "
            "grid's largest kinetic phase per step is above numerics.warn_phase, reduce time.dt as "
            "it says; otherwise use more grid.points or smoother potential pieces")

    def run(self) -> None:
        """Step to t_end (N(t) at step 0 is 0: the device starts empty)."""
        self._record_power(0.0)
        for _ in range(self.n_steps):
            self.step()
        n = self.n  # still in the device at t_end: their fates are unknown
        np.add.at(self.undecided, (self.world[:n], self.period[:n], self.side[:n]), 1)


@dataclass
class OpenResult:
    """What an open-system run measured, summed over worlds where that is what is kept (atomic units).

    Attributes
    ----------
    surfaces : ndarray (n_s,)
    crossings : ndarray (n_worlds, n_s, n_batches) of int
        Net crossings (left to right minus right to left) per batch of [warm_up, t_end].
    exits, exits_total : ndarray (n_worlds, 2, 2) of int
        Electrons leaving, [origin side, exit side]: in the window and over the whole run.
    injected, injected_total : ndarray (n_worlds, 2) of int
    electrons : ndarray (n_frames, n_worlds)
        N(t) at the frames.
    landauer : dict
        The reference (``current``, ``model_current``, ``energies``, ``transmission``, mu_left,
        mu_right, kt, band_bottom, bias).
    """

    config: object
    model: object
    injection: Injection
    sample_ids: np.ndarray
    surfaces: np.ndarray
    crossings: np.ndarray
    exits: np.ndarray
    exits_total: np.ndarray
    injected: np.ndarray
    injected_total: np.ndarray
    electrons: np.ndarray
    frame_times: np.ndarray
    warm_up: float
    t_end: float
    n_batches: int
    max_present: int
    lost: int
    wall_time: float
    landauer: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    ranks: int = 1
    degeneracy: int = 1
    steady_state_time: float = float("nan")
    warnings: list = field(default_factory=list)
    power: dict = field(default_factory=dict)
    power_time: float = float("nan")
    #: ``steady.window_drift`` of N(t) over the averaging window, and the end of N(t)'s transient
    #: by ``steady.mser_truncation`` (NaN: not settled in the first half of the run).
    drift: dict = field(default_factory=dict)
    detected_steady_state_time: float = float("nan")
    #: Electrons by attempt period (``devices.noise``): fates (n_worlds, n_periods, n_cells, origin,
    #: exit side) and undecided (n_worlds, n_periods, origin; still present at t_end or lost).
    fates: np.ndarray | None = None
    undecided: np.ndarray | None = None
    #: Net crossings of every surface between consecutive frames, (n_worlds, n_s, n_frames - 1).
    frame_crossings: np.ndarray | None = None
    #: With a time-dependent bias: the integral of the Ramo-Shockley current over each frame
    #: interval per world, (n_worlds, n_frames - 1); None otherwise.
    ramo: np.ndarray | None = None

    @property
    def averaging_time(self) -> float:
        return self.t_end - self.warm_up

    def current(self) -> dict:
        """Steady-state particle current at every surface [electrons per a.u. time].

        Returns
        -------
        dict with ``mean`` (n_s,), ``standard_error`` (n_s,; from the spread over the independent
        worlds), ``batch_standard_error`` (n_s,; from the spread of the ``n_batches`` batch means in
        time, every world pooled), ``batches`` (n_s, n_batches), and ``exit_mean``,
        ``exit_standard_error``: the same current from the exits (transmitted left-to-right minus
        right-to-left electrons per unit time).
        """
        n_w = self.crossings.shape[0]
        g = self.degeneracy  # spin copies of a non-interacting ensemble carry equal currents
        per_world = g * self.crossings.sum(axis=2) / self.averaging_time
        mean = per_world.mean(axis=0)
        se = per_world.std(axis=0, ddof=1) / np.sqrt(n_w) if n_w > 1 else np.full(mean.shape, np.nan)
        span = self.averaging_time / self.n_batches
        batches = g * self.crossings.sum(axis=0) / (n_w * span)
        b_se = batches.std(axis=1, ddof=1) / np.sqrt(self.n_batches)
        net = g * (self.exits[:, LEFT, RIGHT] - self.exits[:, RIGHT, LEFT]) / self.averaging_time
        e_se = net.std(ddof=1) / np.sqrt(n_w) if n_w > 1 else np.nan
        return {"mean": mean, "standard_error": se, "batch_standard_error": b_se,
                "batches": batches, "exit_mean": float(net.mean()), "exit_standard_error": float(e_se)}

    def noise(self) -> dict:
        """Shot noise of the transmitted counts per attempt period (:mod:`devices.noise`).

        Returns
        -------
        dict with ``fano`` and ``fano_stderr`` (jackknife over the worlds), ``periods`` (the K
        counted periods), ``period`` (t0), ``samples`` (worlds x K), ``mean_count`` (<N> per period
        and world), ``undecided`` (electrons of the counted periods whose fate is unknown),
        ``mean_count_model`` (its expectation in the injection model, ``model_current`` t0 / g),
        ``fano_if_transmitted`` (the same with every undecided electron counted as transmitted:
        with ``fano`` it brackets what their fates can do), ``fano_model``, ``fano_quantum`` (the
        references of ``landauer``) and ``z`` (of fano against fano_model). NaN where no period is
        counted.
        """
        t0 = self.injection.period
        k = counted_periods(t0, self.t_end, self.steady_state_time)
        k = min(k, self.fates.shape[1]) if self.fates is not None else 0
        out = {"periods": k, "period": t0, "samples": k * self.fates.shape[0] if k else 0,
               "fano_model": self.landauer.get("fano_model", float("nan")),
               "fano_quantum": self.landauer.get("fano_quantum", float("nan")),
               "mean_count_model": self.landauer.get("model_current", float("nan")) * t0
               / self.degeneracy}
        if k == 0:
            out.update(fano=float("nan"), fano_stderr=float("nan"), mean_count=float("nan"),
                       undecided=0, fano_if_transmitted=float("nan"), z=float("nan"))
            return out
        f = self.fates[:, :k].sum(axis=2)
        counts = f[:, :, LEFT, RIGHT] - f[:, :, RIGHT, LEFT]
        fano, se = fano_factor(counts)
        und = self.undecided[:, :k]
        alt, _ = fano_factor(counts + und[:, :, LEFT] - und[:, :, RIGHT])
        out.update(fano=fano, fano_stderr=se, mean_count=float(counts.mean()),
                   undecided=int(und.sum()), fano_if_transmitted=alt,
                   z=(fano - out["fano_model"]) / se if se > 0 else float("nan"))
        return out

    def transient(self) -> dict:
        """Time-resolved current, displacement current and power from t = 0 (docs/devices.md,
        "Transients"); every value a mean over the worlds with its standard error [atomic units].

        Returns
        -------
        dict: ``t_start``, ``t_end`` (n_bins,; the frame intervals), ``bias`` (n_bins,; mu_L - mu_R
        at the interval's middle), ``current`` (n_s, n_bins; net crossings per unit time),
        ``ramo_current`` (n_bins,; the Ramo-Shockley current of the electrodes, ``ramo_weights``),
        ``displacement_current`` (n_s, n_bins; ramo_current - current, the current that flows as
        a changing field through the surface), each with ``<q>_stderr``; and with the transient
        power estimator ``power``: the estimator's ``results()`` (frames and windows every
        ``save_every`` steps). Empty when the run has a constant bias.
        """
        if self.ramo is None:
            return {}
        g = self.degeneracy
        edges = self.frame_times
        width = np.diff(edges)
        n_w = self.frame_crossings.shape[0]
        cur = g * self.frame_crossings / width  # (n_w, n_s, n_bins)
        ramo = g * self.ramo / width  # (n_w, n_bins)
        disp = ramo[:, None, :] - cur

        def stats(a):
            se = a.std(axis=0, ddof=1) / np.sqrt(n_w) if n_w > 1 else np.full(a.shape[1:], np.nan)
            return a.mean(axis=0), se

        mid = 0.5 * (edges[1:] + edges[:-1])
        bias = np.zeros(mid.size)
        for d, drop in zip(self.model.drives, drive_drops(self.model, self.injection),
                           strict=True):
            bias = bias + drop * np.asarray(d.profile(mid), dtype=float)
        out = {"t_start": edges[:-1], "t_end": edges[1:], "bias": bias}
        for name, a in (("current", cur), ("ramo_current", ramo), ("displacement_current", disp)):
            out[name], out[name + "_stderr"] = stats(a)
        if "transient" in self.power:
            out["power"] = self.power["transient"]
        return out

    DEVICE_VOLUME = DEVICE_VOLUME

    #: The steady-state power terms, as named by the closed-system estimators (docs/theory.md s. 3).
    POWER_TERMS = ("power", "field_work", "interaction", "quantum", "boundary_flux", "absorbed",
                   "particle_flux")

    def steady_power(self) -> dict:
        """Steady-state energy and power per volume (``whole_device`` last) [atomic units].

        Returns
        -------
        dict: ``volumes`` (names), ``x_min``, ``x_max`` (n_v,), ``averaging_time`` (the whole
        batches the estimators used), and per quantity ``<q>``, ``<q>_stderr`` (over the worlds),
        ``<q>_batch_stderr`` (from the batch means in time), ``<q>_batches`` (n_v, n_batches), for
        ``energy`` (the mean of E_Omega at the n_batches + 1 batch edges; its stderr the mean of
        theirs) and every :attr:`POWER_TERMS` entry (time averages of the window estimators).
        Multiplied by ``degeneracy`` (independent spin copies).
        """
        g = self.degeneracy
        whole, batches = self.power["whole"], self.power["batches"]
        names = list(whole["volumes"])
        vols = {v.name: v for v in power_volumes(self.model, self.injection)}
        out = {"volumes": names, "x_min": np.array([vols[n].x_min for n in names]),
               "x_max": np.array([vols[n].x_max for n in names]),
               "averaging_time": self.power_time}
        nb = self.n_batches
        for q in self.POWER_TERMS:
            out[q] = g * np.array([whole["volumes"][n]["window/" + q][0] for n in names])
            out[q + "_stderr"] = g * np.array([whole["volumes"][n]["window/" + q + "_stderr"][0]
                                               for n in names])
            b = g * np.array([batches["volumes"][n]["window/" + q] for n in names])
            out[q + "_batches"] = b
            out[q + "_batch_stderr"] = b.std(axis=1, ddof=1) / np.sqrt(nb)
        e = g * np.array([batches["volumes"][n]["energy"] for n in names])
        e_se = g * np.array([batches["volumes"][n]["energy_stderr"] for n in names])
        out["energy"] = e.mean(axis=1)
        out["energy_stderr"] = e_se.mean(axis=1)
        out["energy_batches"] = 0.5 * (e[:, 1:] + e[:, :-1])
        out["energy_batch_stderr"] = e.std(axis=1, ddof=1) / np.sqrt(e.shape[1])
        return out


def landauer_of_cells(edges, values, mass: float, left, right, degeneracy: int = 1,
                      n_energies: int = 4001):
    """The Landauer current J = (g/h) int T (f_L - f_R) dE of a potential given as cells
    (``landauer.device_potential``) between the reservoirs ``left`` and ``right``; returns J, the
    transmission T(E) as a function and the band bottom max(U_L, U_R) [atomic units]."""

    def t_of(e):
        return transmission(e, edges, values, mass, left.band_bottom, right.band_bottom)[0]

    bottom = max(left.band_bottom, right.band_bottom)
    j, _, _ = landauer_current(t_of, left.mu, right.mu, left.kt, bottom, degeneracy, n_energies)
    return j, t_of, bottom


def landauer_reference(model, injection: Injection, t: float, degeneracy: int = 1,
                       n_energies: int = 4001, refine: int = 2) -> dict:
    """The Landauer current of the run's own potential, and the injection model's expectation.

    ``current``: J = (g/h) int T (f_L - f_R) dE on U0 + q phi between the injection points.
    ``grid_current``: the same integral on the potential's grid samples (one cell per grid point).
    ``window_current``: the same integral with each f_s restricted to the injected kinetic energies
    (energy_min, energy_max] above its band bottom.
    ``model_current``: sum over cells of the attempt rate times f times the packet-averaged
    transmission <T>_j (:func:`devices.injection.packet_transmission`), i.e. what the injected ensemble
    converges to with infinitely many worlds; its difference from ``current`` is the injection
    model's systematic error (finite packet width and energy cells).
    ``packet_transmission``: (left, right) arrays of those <T>_j.
    ``fano_model``, ``fano_quantum``: the Fano factor of the transmitted counts that the injection
    model expects, and the two-terminal formula of non-interacting fermions with the occupations
    restricted to the injected energies (:mod:`devices.noise`).
    """
    left, right = injection.reservoirs
    edges, values = device_potential(model, left.x_inject, right.x_inject, t, refine)
    j, t_of, bottom = landauer_of_cells(edges, values, model.mass, left, right, degeneracy,
                                        n_energies)
    # the same integral over the injected energies only (each side's cells)
    e_w = np.linspace(bottom, max(left.band_bottom, right.band_bottom) + injection.energy_max,
                      n_energies)
    f_window = []
    for res in (left, right):
        kin = e_w - res.band_bottom
        inside = (kin > injection.energy_min) & (kin <= injection.energy_max)
        f_window.append(np.where(inside, fermi(e_w, res.mu, res.kt), 0.0))
    j_window = degeneracy / (2.0 * np.pi) * float(np.trapezoid(t_of(e_w) * (f_window[0] -
                                                                             f_window[1]), e_w))
    j_model = 0.0
    p_cells = []
    for side, sign in ((LEFT, 1.0), (RIGHT, -1.0)):
        t_j = packet_transmission(injection, t_of, side, n_k=241)
        p_cells.append(t_j)
        j_model += sign * float(np.sum(injection.occupations(side) * t_j)) / injection.period
    # the same current on the grid's samples of the potential (what the split step sees), one cell
    # per grid point: where it differs, the potential is not resolved by the grid
    x = np.asarray(model.grid.x)
    dx = float(model.grid.dx)
    inside = (x - 0.5 * dx > left.x_inject) & (x + 0.5 * dx < right.x_inject)
    g_edges = np.concatenate(([left.x_inject], x[inside][1:] - 0.5 * dx, [right.x_inject]))
    g_values = _potential(model, x[inside], t)

    def t_grid(e):
        return transmission(e, g_edges, g_values, model.mass, left.band_bottom,
                            right.band_bottom)[0]

    j_grid, _, _ = landauer_current(t_grid, left.mu, right.mu, left.kt, bottom, degeneracy,
                                    n_energies)
    e_plot = np.linspace(bottom, bottom + 1.5 * injection.energy_max, 601)
    return {"current": j, "window_current": j_window, "model_current": degeneracy * j_model,
            "grid_current": j_grid, "energies": e_plot,
            "packet_transmission": tuple(p_cells),
            "fano_model": fano_model(injection, *p_cells),
            "fano_quantum": fano_quantum(t_of, e_w, *f_window),
            "transmission": t_of(e_plot), "mu_left": left.mu, "mu_right": right.mu,
            "kt": left.kt, "band_bottom": bottom, "bias": left.band_bottom - right.band_bottom}


#: What a block of worlds contributes besides its power sums (``OpenEnsemble`` attributes).
_PART_ARRAYS = ("crossings", "exits", "exits_total", "injected", "injected_total", "electrons",
                "fates", "undecided", "frame_crossings", "ramo", "max_present", "lost")


def _part_arrays(part: dict) -> dict:
    """A block's contribution as flat arrays (a checkpoint file)."""
    out = {k: np.asarray(part[k]) for k in _PART_ARRAYS + ("first", "last")}
    for name, sums in part["power"].items():
        for k, v in sums.as_dict().items():
            out[f"power/{name}/{k}"] = np.asarray(v)
    return out


def _part_from_arrays(data: dict) -> dict:
    """The inverse of :func:`_part_arrays`, checked finite."""
    from bohmpower.errors import BadBlockError
    from bohmpower.power.estimators import BlockSums

    part = {k: data[k] for k in _PART_ARRAYS}
    part["first"], part["last"] = int(data["first"]), int(data["last"])
    power: dict = {}
    for key, v in data.items():
        if key.startswith("power/"):
            _, name, k = key.split("/", 2)
            power.setdefault(name, {})[k] = v.item() if v.ndim == 0 else v
    part["power"] = {name: BlockSums.from_dict(d) for name, d in power.items()}
    for name, d in power.items():
        for k, v in d.items():
            if isinstance(v, np.ndarray) and v.dtype.kind == "f" and not np.all(np.isfinite(v)):
                raise BadBlockError(f"checkpoint block of worlds {part['first']}-{part['last']}: "
                                    f"{name}/{k} is not finite; remove that file and resume again")
    return part


class OpenSolver:
    """An open-system run (``[reservoirs]``): worlds in blocks, ranks round-robin over blocks.

    Parameters
    ----------
    config : RunConfig
        With ``[reservoirs]`` (any unit system).
    workers : int, optional
        Threads of the propagator (``numerics.fft_workers`` when None).
    block_size : int
        Worlds per pool.
    """

    def __init__(self, config, workers: int | None = None, block_size: int = DEFAULT_BLOCK) -> None:
        config.check_command("run")
        self.config = config
        self.model, self.injection, self.warnings = build_open_model(config)
        atomic = config.to_atomic()  # (model.config is the stand-in of build_open_model)
        self.atomic = atomic
        self.workers = int(workers or atomic.numerics.fft_workers)
        self.block_size = int(block_size)
        self.n_samples = int(atomic.trajectories.count)
        self.surfaces = surfaces_of(self.model, self.injection)
        self.volumes = power_volumes(self.model, self.injection)
        self.transient = is_transient(self.model)
        self.steady_state_time = steady_state_time(self.model, self.injection,
                                                   float(atomic.time.t_end))
        if atomic.steady_state.warm_up == AUTO_WARM_UP:
            self._set_warm_up(self.steady_state_time)
            atomic = self.atomic
        ref = landauer_reference(self.model, self.injection, float(atomic.time.t_end),
                                 atomic.reservoirs.degeneracy)
        if abs(ref["grid_current"] - ref["current"]) > GRID_TOLERANCE * abs(ref["current"]):
            self.warnings.append(
                f"the potential is not resolved by the grid: its Landauer current on the grid "
                f"samples differs from the continuum one by "
                f"{abs(ref['grid_current'] / ref['current'] - 1):.1%} (more than "
                f"{GRID_TOLERANCE:.0%}); the injected current follows the grid's potential "
                "(docs/devices.md): use more grid.points or smoother potential pieces")
        self.reference = ref
        if atomic.steady_state.warm_up < self.steady_state_time:
            us = config.unit_system
            self.warnings.append(
                f"steady_state.warm_up = {us.quantity(atomic.steady_state.warm_up, 'time')} is "
                f"shorter than the estimated time to steady state "
                f"{us.quantity(self.steady_state_time, 'time')} (the slowest energy cell's passage, "
                "docs/devices.md): the averages still hold part of the transient")

    def _set_warm_up(self, warm_up: float) -> None:
        """``warm_up = "auto"``: the averaging window starts at ``warm_up`` [a.u.], the estimated
        time to steady state, if it leaves at least one injection period before t_end."""
        us = self.config.unit_system
        a = self.atomic
        t_end, period = float(a.time.t_end), float(self.injection.period)
        if t_end - warm_up < period:
            raise ConfigError(
                "steady_state.warm_up",
                f'"auto" takes the estimated time to steady state, '
                f"{us.quantity(warm_up, 'time')} (the slowest energy cell's passage, "
                f"docs/devices.md), which leaves t_end - warm_up = "
                f"{us.quantity(max(t_end - warm_up, 0.0), 'time')}, less than one injection period "
                f"h/dE = {us.quantity(period, 'time')}: lengthen time.t_end to at least "
                f"{us.quantity(warm_up + period, 'time')}, or give warm_up as a time")
        user = us.from_atomic(warm_up, "time")
        self.config = dataclasses.replace(
            self.config, steady_state=dataclasses.replace(self.config.steady_state, warm_up=user))
        self.atomic = dataclasses.replace(
            a, steady_state=dataclasses.replace(a.steady_state, warm_up=float(warm_up)))

    def run(self, comm=None, progress=None, checkpoint=None, resume: bool = False,
            stop_requested=None, max_wall_time: float | None = None) -> OpenResult:
        """Run every world; returns the result on rank 0 (None on the other ranks).

        With a ``checkpoint`` (``checkpoint.Checkpoint``), every finished block of worlds is written
        to it (``open-<first>-<last>.npz``, by the rank that ran it); with ``resume`` the blocks on
        disk are read back instead of run again. ``stop_requested()`` true on any rank before a
        round of blocks stops the run cleanly (``StoppedEarly``) with the finished blocks on disk,
        and so does ``max_wall_time`` (seconds) before a round that would end past it.
        Each world's result does not depend on its block, so a resumed run equals a straight one
        (counts exactly, the power estimates to round-off: other blocks merge them).
        """
        from bohmpower.checkpoint import resume_on_root
        from bohmpower.parallel import SerialComm, any_rank, gather_to_root, my_blocks

        start = _time.perf_counter()
        a = self.atomic
        ids = np.arange(self.n_samples)
        comm = comm or SerialComm()
        def finished():
            found = {k: p for k, p in checkpoint.open_block_files().items()
                     if k[1] < self.n_samples}
            return found, sum(last - first + 1 for first, last in found)

        found, keys = resume_on_root(checkpoint, resume, comm, self.n_samples, finished, "worlds")
        done = {k: found.get(k) for k in keys}
        covered = np.zeros(ids.size, dtype=bool)
        for first, last in done:
            covered[first:last + 1] = True
        todo_ids = ids[~covered]
        if progress is not None and comm.rank == 0 and covered.any():
            getattr(progress, "skip", progress)(int(covered.sum()))
        # every rank gets work even in small runs; each world's result does not depend on its block
        bs = max(1, min(self.block_size, -(-todo_ids.size // comm.size))) if todo_ids.size else 1
        runs = np.split(todo_ids, np.flatnonzero(np.diff(todo_ids) != 1) + 1) if todo_ids.size else []
        blocks = [r[i:i + bs] for r in runs for i in range(0, r.size, bs)]
        mine = my_blocks(blocks, comm)
        n_rounds = -(-len(blocks) // comm.size)
        frames = np.asarray(a.time.frame_steps)
        parts = []
        timings = {"propagate": 0.0, "guidance": 0.0, "bookkeeping": 0.0}
        round_time = 0.0
        for i in range(n_rounds):
            late = max_wall_time is not None and (
                _time.perf_counter() - start + 1.2 * round_time > max_wall_time)
            if any_rank(late or (stop_requested is not None and stop_requested()), comm):
                from bohmpower.errors import StoppedEarly

                raise StoppedEarly(
                    "stopped before all worlds were run"
                    + (f"; the finished blocks are in {checkpoint.dir}: run again with --resume"
                       if checkpoint is not None else ""))
            if i >= len(mine):
                continue
            blk = mine[i]
            t_round = _time.perf_counter()
            ens = OpenEnsemble(self.model, self.injection, blk, a.trajectories.seed, a.time.n_steps,
                               a.steady_state.warm_up, a.steady_state.batches, self.surfaces,
                               a.particles.count, frames, self.workers, volumes=self.volumes,
                               transient=self.transient)
            try:
                ens.run()
            except NumericalError as exc:
                raise exc.in_units(self.config.unit_system) from None
            for k, v in ens.timings.items():
                timings[k] += v
            part = {"first": int(blk[0]), "last": int(blk[-1]), "power": ens.power_sums(),
                    **{k: getattr(ens, k) for k in _PART_ARRAYS}}
            if checkpoint is not None:
                checkpoint.save_arrays(f"open-{part['first']}-{part['last']}.npz",
                                       _part_arrays(part))
            parts.append(part)
            round_time = max(round_time, _time.perf_counter() - t_round)
            if progress is not None:
                progress(blk.size)
        parts = gather_to_root(parts, comm)
        if parts is None:
            return None
        parts += [_part_from_arrays(checkpoint.load_arrays(path)) for path in done.values()]
        parts.sort(key=lambda p: p["first"])
        if not parts:
            raise NumericalError(0, 0.0, "no world was run")
        cat = {k: np.concatenate([p[k] for p in parts], axis=1 if k == "electrons" else 0)
               for k in _PART_ARRAYS if k not in ("max_present", "lost")}
        lost = sum(int(p["lost"]) for p in parts)
        _, p_steps, est = power_estimators(self.volumes, float(a.time.dt), int(a.time.n_steps),
                                           float(a.steady_state.warm_up),
                                           int(a.steady_state.batches),
                                           transient_steps(frames) if self.transient else None)
        for p in parts:
            for name, e in est.items():
                e.merge(p["power"][name])
        power = {name: e.results() for name, e in est.items()}
        if lost:
            logger.warning("%d electron(s) removed for a non-finite velocity", lost)
        ref = self.reference
        dt = float(a.time.dt)
        from bohmpower.devices.steady import steady_state_tests

        drift, detected, notes = steady_state_tests(frames * dt, cat["electrons"],
                                                    float(a.steady_state.warm_up),
                                                    self.config.unit_system)
        result = OpenResult(
            config=self.config, model=self.model, injection=self.injection, sample_ids=ids,
            surfaces=self.surfaces, crossings=cat["crossings"], exits=cat["exits"],
            exits_total=cat["exits_total"], injected=cat["injected"],
            injected_total=cat["injected_total"], electrons=cat["electrons"], frame_times=frames * dt,
            warm_up=float(a.steady_state.warm_up), t_end=float(a.time.t_end),
            n_batches=int(a.steady_state.batches),
            max_present=max(int(p["max_present"]) for p in parts), lost=lost,
            wall_time=_time.perf_counter() - start, landauer=ref, timings=timings,
            degeneracy=int(a.reservoirs.degeneracy), steady_state_time=self.steady_state_time,
            warnings=list(self.warnings) + notes, power=power, power_time=p_steps * dt,
            drift=drift, detected_steady_state_time=detected, fates=cat["fates"],
            undecided=cat["undecided"], frame_crossings=cat["frame_crossings"],
            ramo=cat["ramo"] if self.transient else None,
        )
        noise = result.noise()
        if abs(noise["fano_if_transmitted"] - noise["fano"]) > noise["fano_stderr"]:
            result.warnings.append(
                f"{noise['undecided']} electron(s) injected in the {noise['periods']} attempt "
                "periods counted for the shot noise were still in the device at t_end or lost; "
                f"their fates could move the Fano factor from {noise['fano']:.4g} to "
                f"{noise['fano_if_transmitted']:.4g}, more than its standard error "
                f"{noise['fano_stderr']:.2g} (docs/devices.md, shot noise): lengthen time.t_end")
        return result


def describe_open(config) -> str:
    """What ``bohmpower check`` says about an open-system run: injection, time scales, Landauer."""
    solver = OpenSolver(config)
    us = config.unit_system
    inj = solver.injection
    left, right = inj.reservoirs
    ref = solver.reference
    q = us.quantity
    surfaces = ", ".join(q(s, "length") for s in solver.surfaces)
    lines = [
        (f"  open system: mu_L - mu_R = {q(left.mu - right.mu, 'energy')}, kT = "
         f"{q(left.kt, 'energy')}; {inj.n_cells} cells of {q(inj.d_energy, 'energy')} per "
         f"reservoir, one attempt each per h/dE = {q(inj.period, 'time')}"),
        (f"  mean injection rate {q(inj.expected_rate(LEFT), 'frequency')} (left), "
         f"{q(inj.expected_rate(RIGHT), 'frequency')} (right); current counted at {surfaces}"),
        (f"  estimated time to steady state {q(solver.steady_state_time, 'time')}; warm-up "
         f"{q(solver.atomic.steady_state.warm_up, 'time')}"),
        (f"  Landauer current {q(ref['current'], 'frequency')} (injection model "
         f"{q(ref['model_current'], 'frequency')})"),
    ]
    if solver.transient:
        lines.append("  the bias is switched on: the transient from t = 0 is recorded (currents "
                     "through the surfaces, in the circuit and displacement; power per volume)")
    if solver.model.interaction is not None and solver.model.interaction.kind != "none":
        lines.append("  interacting electrons: each evolves in the conditional potential of the "
                     "electrons present in its world (zeroth order, docs/devices.md)")
    lines += [f"  warning: {w}" for w in solver.warnings]
    return "\n".join(lines)
