"""World-stepping engine of the zeroth-order conditional-wavefunction (CW) method (THEORY.md section 4).

A :class:`CWEnsemble` holds a block of B worlds: positions X (B, N), the CWs ``psi`` (B, C, n_x) laid out as
in :mod:`bohmpower.cw.guidance` (C = N without exchange, N*N with it), log-weights, and the current
:class:`CWState`, whose attributes are exactly those of ``bohmpower.exact.trajectories.TrajectoryState`` so
that the same estimators consume both.

Integrator (second order, matching the Strang propagator, whose potential is taken at mid-step positions)
---------------------------------------------------------------------------------------------------------

.. math::

    v_n = v(X_n; \\psi(t_n)), \\qquad X_{mid} = X_n + \\tfrac{\\Delta t}{2} v_n, \\qquad
    \\psi(t_n) \\to \\psi(t_{n+1}) \\text{ in the conditional potentials at } X_{mid},

    X^* = X_n + \\Delta t\\, v_n, \\qquad v^* = v(X^*; \\psi(t_{n+1})), \\qquad
    X_{n+1} = X_n + \\tfrac{\\Delta t}{2}(v_n + v^*),

then every per-electron quantity is evaluated at X_{n+1} with psi(t_{n+1}) (and supplies v_{n+1}).

Weights and removal (THEORY.md section 6): w = exp(-2 int Gamma_tot(X) dt), the integral by the trapezoid
rule over each step; a world whose weight falls below ``WEIGHT_FLOOR`` or whose position leaves the cell
[x_min, x_max) is removed: weight 0, NaN in every per-electron array, and its CWs are no longer propagated.

Numerical health (checked at every evaluated state)
---------------------------------------------------
A live world fails when any of its CWs holds NaN/inf; when, without absorbing layers, a CW's norm
sum |psi_c|^2 dx moved by more than ``norm_tolerance`` relative to its initial value (the conditional
Hamiltonian is Hermitian and the split step unitary, so the norm is conserved to round-off); when an
electron sits where its CW has no amplitude, |psi_a(X_a)|^2 < density_floor max_x |psi_a(x)|^2 (with
exchange this is also how a singular Slater matrix A^a shows, or the LU solve reports it exactly
singular); when, averaged over the live worlds, more than ``SPECTRAL_EDGE_TOLERANCE`` of a CW's
spectral weight sum |psi_c(k)|^2 lies in the top 10 % of the grid's wavenumbers (the exact engine's
resolution check on Psi, whose Monte Carlo counterpart is that mean: one slice alone can carry more
high-k weight than Psi; the world with the largest weight fails; checked every ``spectral_every``
steps, one forward FFT per CW, against two FFTs per CW per step in the propagator); or when a
velocity or energy is not
finite. Failing worlds are taken out of the ensemble
(like removed worlds, but counted in ``failed``, not in ``n_removed``) and reported as
:class:`SampleFailure` (sample id, electron, step, time, cause). Whether to stop the run or drop the
sample is the run loop's decision: by default the exception is raised after the state is committed
(so the loop may catch it and call :meth:`CWEnsemble.step` again); with ``discard_failures=True`` it is
only recorded (``failed``, ``new_failures``) and logged.

Crossings: a world "crossed" once the order of its electrons differs from its initial order (identical
fermions never cross in exact 1D dynamics; the zeroth-order CW without exchange does not enforce it).
"""

from __future__ import annotations

import logging
import time as _time
import warnings
from dataclasses import dataclass

import numpy as np

from bohmpower.errors import ConfigError, NumericalError
from bohmpower.model.state import TrajectoryState
from bohmpower.units import ATOMIC

from .guidance import (
    PointPotentials,
    guidance_ratios,
    health_measures,
    initial_conditional_wavefunctions,
    velocity_and_quantum_potential,
)

__all__ = [
    "DEFAULT_NORM_TOLERANCE",
    "WEIGHT_FLOOR",
    "absorb_and_keep",
    "mark_crossings",
    "CWEnsemble",
    "CWState",
    "Failure",
    "SampleFailure",
    "propagator_arguments",
]

logger = logging.getLogger(__name__)

#: A world whose weight falls below this is removed (THEORY.md section 6; as exact.trajectories).
WEIGHT_FLOOR = 1e-12
#: Ratios by rho are meaningless below this fraction of the CW's peak density (SPEC.md density cutoff).
DEFAULT_DENSITY_FLOOR = 1e-13
#: Largest relative norm change of a CW allowed without absorbing layers (unitary steps: round-off only).
DEFAULT_NORM_TOLERANCE = 1e-6
#: Largest fraction of a CW's spectral weight allowed in the top 10 % of the grid's wavenumbers: the
#: exact engine's value (``driver.SPECTRAL_EDGE_TOLERANCE``), so both engines stop on the same grids.
SPECTRAL_EDGE_TOLERANCE = 1e-6
#: Steps between two spectral-edge checks (module Notes; its cost is measured by scripts/bench_cw.py).
DEFAULT_SPECTRAL_EVERY = 10

_STATE_KEYS = ("v", "e", "Q", "field_force", "field_power", "pair_force", "pair_power", "du0")


# ---------------------------------------------------------------------------------------- records
#: One step of B worlds: the shared record of every trajectory source (model.state).
CWState = TrajectoryState


@dataclass(frozen=True)
class Failure:
    """One failed world: sample id, electron (0-based), step, time [a.u. time] and cause."""

    sample_id: int
    particle: int
    step: int
    time: float
    cause: str


class SampleFailure(NumericalError):
    """One or more worlds went numerically bad at a step (module Notes).

    Attributes
    ----------
    sample_id, particle, step, time, cause
        Of the first failure (lowest sample id).
    failures : tuple of Failure
        Every world that failed at this step.
    """

    def __init__(self, sample_id: int, particle: int, step: int, cause: str, time: float = np.nan,
                 failures: tuple[Failure, ...] = ()):
        self.sample_id = int(sample_id)
        self.particle = int(particle)
        self.failures = tuple(failures) or (Failure(sample_id, particle, step, time, cause),)
        more = len(self.failures) - 1
        text = f"sample {sample_id}, electron {particle}: {cause}"
        if more:
            text += f" (and {more} more sample(s) at this step)"
        super().__init__(step, time, text)
        self.cause = cause

    @classmethod
    def from_failures(cls, failures: list[Failure]) -> SampleFailure:
        f = min(failures, key=lambda r: r.sample_id)
        return cls(f.sample_id, f.particle, f.step, f.cause, f.time, tuple(failures))


# ---------------------------------------------------------------------------------------- helpers
def propagator_arguments(model, dt: float, workers: int = 1) -> dict:
    """Constructor arguments of ``cw.propagator.ConditionalPropagator`` for a Model (keyword dict)."""
    inter = getattr(model, "interaction", None)
    w = inter.w if inter is not None and getattr(inter, "kind", "none") != "none" else None
    drives = tuple(getattr(model, "drives", ()) or ())
    shapes = np.array([d.potential_shape for d in drives], dtype=float).reshape(len(drives), model.grid.n_x)
    gamma = getattr(model, "gamma", None)
    return {
        "x": np.asarray(model.grid.x, dtype=float),
        "mass": float(model.mass),
        "u0": np.asarray(model.u0, dtype=float),
        "gamma": None if gamma is None else np.asarray(gamma, dtype=float),
        "w": w,
        "drive_shapes": shapes if drives else None,
        "profiles": [d.profile for d in drives],
        "dt": float(dt),
        "workers": int(workers),
    }


def absorb_and_keep(potentials, log_weight: np.ndarray, old, X_new: np.ndarray, dt: float,
                    x_min: float, x_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights of a step and the worlds that stay (module Notes: weights and removal).

    log w -= (2/hbar) (dt/2) (Gamma_tot(X_old) + Gamma_tot(X_new)) (the trapezoid rule); a world is
    kept when alive, finite, inside [x_min, x_max) and above ``WEIGHT_FLOOR``. Returns the new
    log-weights and the keep mask. Shared by the zeroth-order and the interacting ensembles.
    """
    alive = old.alive
    finite = np.all(np.isfinite(X_new), axis=1)
    inside = alive & finite & np.all((X_new >= x_min) & (X_new < x_max), axis=1)
    g_new = np.zeros(X_new.shape[0])
    if potentials.absorbing and np.any(inside):
        g_new[inside] = potentials.gamma_at(X_new[inside]).sum(axis=1)
    log_weight = np.where(alive, log_weight - dt * (old.gamma_total + g_new), -np.inf)
    return log_weight, inside & (log_weight >= np.log(WEIGHT_FLOOR))


def mark_crossings(crossed: np.ndarray, state, order0: np.ndarray) -> None:
    """Set ``crossed`` (in place) for the live worlds whose electrons left their initial order."""
    now = state.alive
    if state.X.shape[1] > 1 and np.any(now):
        ordered = np.take_along_axis(state.X[now], order0[now], axis=1)
        crossed[now] |= np.any(np.diff(ordered, axis=1) < 0, axis=1)


def top_wavenumbers(n_x: int) -> slice:
    """The FFT bins in the top 10 % of |k| (as the exact engine's check): one contiguous run
    around the Nyquist bin in numpy's FFT order."""
    kidx = np.abs(np.fft.fftfreq(n_x) * n_x)
    top = np.flatnonzero(kidx >= 0.9 * (n_x // 2))
    return slice(int(top[0]), int(top[-1]) + 1)


def spectral_edge_weights(psi: np.ndarray, top: slice | None = None) -> np.ndarray:
    """Fraction of sum_k |psi_c(k)|^2 in the top 10 % of |k| for every CW.

    Parameters
    ----------
    psi : ndarray, complex, shape (..., n_x)
    top : bins from :func:`top_wavenumbers` (computed when None).

    Returns
    -------
    ndarray, shape psi.shape[:-1]: the fractions (0 for an all-zero CW, NaN where psi is not finite).

    Notes
    -----
    The total is sum_k |psi(k)|^2 = n_x sum_x |psi(x)|^2 (Parseval), so only the top bins of the
    transform are squared: the forward FFT is the whole cost.
    """
    import scipy.fft as sfft

    n_x = psi.shape[-1]
    if top is None:
        top = top_wavenumbers(n_x)
    pk = sfft.fft(psi, axis=-1, workers=1)[..., top]
    edge = np.einsum("...m,...m->...", pk.real, pk.real) + np.einsum("...m,...m->...", pk.imag,
                                                                     pk.imag)
    total = n_x * (np.einsum("...m,...m->...", psi.real, psi.real)
                   + np.einsum("...m,...m->...", psi.imag, psi.imag))
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = edge / np.where(total > 0, total, 1.0)
    return np.where(np.isfinite(total), np.where(total > 0, frac, 0.0), np.nan)


def _norms(psi: np.ndarray, dx: float) -> np.ndarray:
    re, im = psi.real, psi.imag
    return (np.einsum("bcm,bcm->bc", re, re) + np.einsum("bcm,bcm->bc", im, im)) * dx


# ---------------------------------------------------------------------------------------- ensemble
class CWEnsemble:
    """A block of CW worlds stepped together (module Notes).

    Parameters
    ----------
    model : bohmpower.model.Model
        Uses grid, mass, n_particles, statistics, u0, gamma, drives, interaction, orbitals,
        include_drive_potential, config.time.dt and config.numerics.density_cutoff.
    X0 : ndarray, shape (B, N)
        Initial positions [bohr] (``model.sampling.sample_configurations``: "slater" for fermions,
        "product" for distinguishable electrons).
    exchange : bool
        Alarcon et al. exchange (N*N CWs per world); fermions only.
    workers : int
        Threads for the propagator's FFTs.
    dt : float, optional
        Step [a.u. time]; default ``model.config.time.dt``.
    t0 : float
        Initial time [a.u. time].
    sample_ids : ndarray of int, shape (B,), optional
        Global ids of the worlds (default 0..B-1), used in failure reports.
    propagator : object, optional
        A ConditionalPropagator (or anything with its ``step``/``derivatives``); default one built from
        the model with :func:`propagator_arguments`.
    discard_failures : bool
        False (default): raise :class:`SampleFailure` when a world fails; True: only record it.
    density_floor : float, optional
        Relative-density limit of the health check; default ``config.numerics.density_cutoff`` or 1e-13.
    norm_tolerance : float
        Relative norm change of a CW tolerated without absorbing layers.
    health_every : int
        Steps between full health checks (norms and relative densities: one memory-bound pass over all
        CWs, fused in a numba kernel); non-finite velocities, quantum potentials and energies are
        checked at every step.
    spectral_every : int
        Steps between spectral-edge (resolution) checks of the CWs (module Notes); 0 switches them off.
    spectral_tolerance : float
        Largest spectral weight fraction allowed in the top 10 % of the wavenumbers.

    Attributes
    ----------
    state : CWState
        The current state; ``previous`` the one before.
    psi : ndarray, complex, shape (B, C, n_x)
        The CWs (C = N, or N*N with exchange); ``owner`` (C,) the electron of each.
    step_index : int
        Steps taken.
    crossed : ndarray of bool, shape (B,)
        Worlds whose electrons changed order at some step; ``n_crossed`` their number.
    n_removed : int
        Worlds removed by absorption or leaving the cell.
    failed : dict
        sample id -> :class:`Failure`; ``new_failures`` those of the last step.
    timings : dict
        Accumulated seconds in ``propagate``, ``guidance`` (ratios and per-electron quantities) and
        ``health``.

    Raises
    ------
    ConfigError
        ("initial.many_body_state") a model without orbitals; ("method.exchange") exchange with
        distinguishable electrons.
    SampleFailure
        From the constructor or :meth:`step`, unless ``discard_failures``.
    """

    def __init__(
        self,
        model,
        X0: np.ndarray,
        exchange: bool,
        workers: int = 1,
        *,
        dt: float | None = None,
        t0: float = 0.0,
        sample_ids: np.ndarray | None = None,
        propagator=None,
        discard_failures: bool = False,
        density_floor: float | None = None,
        norm_tolerance: float = DEFAULT_NORM_TOLERANCE,
        health_every: int = 1,
        spectral_every: int = DEFAULT_SPECTRAL_EVERY,
        spectral_tolerance: float = SPECTRAL_EDGE_TOLERANCE,
    ) -> None:
        if getattr(model, "orbitals", None) is None:
            raise ConfigError(
                "initial.many_body_state",
                "the conditional-wavefunction method starts from orbitals; give [[initial.packet]], "
                "[initial.train] or [[initial.eigenstate]]",
            )
        self.exchange = bool(exchange)
        if self.exchange and model.statistics != "fermion":
            raise ConfigError("method.exchange", "exchange = true needs particles.statistics = 'fermion'")
        self.model = model
        self.n_particles = int(model.n_particles)
        X0 = np.array(X0, dtype=float)
        if X0.ndim != 2 or X0.shape[1] != self.n_particles:
            raise ValueError(f"X0 must have shape (B, {self.n_particles}), got {X0.shape}")
        self.n_worlds = X0.shape[0]
        ids = np.arange(self.n_worlds) if sample_ids is None else np.asarray(sample_ids, dtype=int)
        if ids.shape != (self.n_worlds,):
            raise ValueError(f"sample_ids must have shape ({self.n_worlds},), got {ids.shape}")
        self.sample_ids = ids
        if dt is None:
            dt = float(model.config.time.dt)
        if not dt > 0:
            raise ConfigError("time.dt", f"must be > 0, got {dt}")
        self.dt = float(dt)
        self.grid = model.grid
        self.x_min, self.x_max, self.dx = float(model.grid.x_min), float(model.grid.x_max), float(
            model.grid.dx
        )
        self.potentials = PointPotentials.from_model(model)
        if density_floor is None:
            numerics = getattr(getattr(model, "config", None), "numerics", None)
            density_floor = getattr(numerics, "density_cutoff", None) or DEFAULT_DENSITY_FLOOR
        self.density_floor = float(density_floor)
        self.norm_tolerance = float(norm_tolerance)
        self.discard_failures = bool(discard_failures)
        if int(health_every) < 1:
            raise ValueError(f"health_every must be >= 1, got {health_every}")
        self.health_every = int(health_every)
        if int(spectral_every) < 0:
            raise ValueError(f"spectral_every must be >= 0, got {spectral_every}")
        self.spectral_every = int(spectral_every)
        self.spectral_tolerance = float(spectral_tolerance)
        self._top = top_wavenumbers(model.grid.n_x)
        #: Largest spectral-edge weight of any live CW seen at a check.
        self.max_spectral_edge = 0.0

        self.psi, self.owner = initial_conditional_wavefunctions(
            model.orbitals, model.grid.x, X0, model.statistics, self.exchange
        )
        if propagator is None:
            from bohmpower.cw.propagator import ConditionalPropagator

            propagator = ConditionalPropagator(**propagator_arguments(model, self.dt, workers))
        self.propagator = propagator
        self.timings = {"propagate": 0.0, "guidance": 0.0, "health": 0.0}
        self.norm0 = _norms(self.psi, self.dx)
        self.step_index = 0
        self.log_weight = np.zeros(self.n_worlds)
        self.crossed = np.zeros(self.n_worlds, dtype=bool)
        self._order0 = np.argsort(X0, axis=1)
        self.n_removed = 0
        self.failed: dict[int, Failure] = {}
        self.new_failures: list[Failure] = []
        self.previous: CWState | None = None
        alive = np.ones(self.n_worlds, dtype=bool)
        self.state = self._build_state(X0, alive, float(t0))
        self._raise_failures()

    # ------------------------------------------------------------------ properties
    @property
    def t(self) -> float:
        """Current time [a.u. time]."""
        return self.state.t

    @property
    def n_crossed(self) -> int:
        """Number of worlds in which two electrons crossed (changed order) so far."""
        return int(np.sum(self.crossed))

    @property
    def n_conditional(self) -> int:
        """CWs per world, C."""
        return int(self.owner.size)

    # ------------------------------------------------------------------ internals
    def _ratios(self, X: np.ndarray, idx: np.ndarray):
        """Guidance ratios of the worlds ``idx`` at positions X[idx] (psi copied only for a subset)."""
        psi = self.psi if idx.size == self.n_worlds else self.psi[idx]
        return psi, guidance_ratios(self.propagator, psi, X[idx], self.owner, self.exchange)

    def _velocity(self, X: np.ndarray, alive: np.ndarray) -> np.ndarray:
        v = np.full(X.shape, np.nan)
        idx = np.flatnonzero(alive)
        if idx.size:
            _, (r1, _, _, _) = self._ratios(X, idx)
            v[idx] = np.imag(r1) / self.potentials.mass
        return v

    def _build_state(self, X: np.ndarray, alive: np.ndarray, t: float) -> CWState:
        """Evaluate every per-electron quantity at X for the live worlds, with the health check."""
        n_w, n = X.shape
        vals = {k: np.full((n_w, n), np.nan) for k in _STATE_KEYS}
        gamma_total = np.zeros(n_w)
        self.new_failures = []
        idx = np.flatnonzero(alive)
        if idx.size:
            a = _time.perf_counter()
            psi, (r1, r2, values, z) = self._ratios(X, idx)
            v, q = velocity_and_quantum_potential(r1, r2, self.potentials.mass)
            ev = self.potentials.evaluate(X[idx], v, q, t)
            b = _time.perf_counter()
            vals["v"][idx] = v
            vals["Q"][idx] = q
            for k in _STATE_KEYS:
                if k not in ("v", "Q"):
                    vals[k][idx] = ev[k]
            gamma_total[idx] = ev["gamma_total"]
            bad = self._health(psi, idx, values, z, vals, t)
            self.timings["guidance"] += b - a
            self.timings["health"] += _time.perf_counter() - b
            if bad.size:
                alive = alive.copy()
                alive[bad] = False
        for k in _STATE_KEYS:
            vals[k][~alive] = np.nan
        gamma_total[~alive] = 0.0
        self.log_weight = np.where(alive, self.log_weight, -np.inf)
        weight = np.where(alive, np.exp(self.log_weight), 0.0)
        Xs = np.where(alive[:, None], X, np.nan)
        return CWState(t=t, X=Xs, gamma_total=gamma_total, weight=weight, **vals)

    def _health(self, psi, idx, values, z, vals, t) -> np.ndarray:
        """Record failures of the live worlds ``idx``; return the indices (into the block) that failed."""
        owner = self.owner
        if self.step_index % self.health_every == 0:
            norms, rel = health_measures(psi, values=None if self.exchange else values[..., 0], z=z)
            norms *= self.dx
            finite_cw = np.isfinite(norms)
            if self.potentials.absorbing:
                norm_bad = np.zeros_like(finite_cw)
            else:
                with np.errstate(invalid="ignore", divide="ignore"):
                    norm_bad = ~(np.abs(norms / self.norm0[idx] - 1.0) <= self.norm_tolerance) & finite_cw
            no_amp = rel < self.density_floor
        else:
            # between full checks: a NaN anywhere in a CW reaches its point values through the FFTs of
            # the next step, so non-finite guidance below still catches it
            norms = np.ones((idx.size, owner.size))
            finite_cw = np.ones(norms.shape, dtype=bool)
            norm_bad = np.zeros(norms.shape, dtype=bool)
            rel = np.ones((idx.size, self.n_particles))
            no_amp = np.zeros(rel.shape, dtype=bool)
        if self.spectral_every and self.step_index % self.spectral_every == 0:
            edge = spectral_edge_weights(psi, self._top)
            finite_cw &= np.isfinite(edge)
            # The exact engine tests the edge weight of Psi; its counterpart here is the mean over
            # the live worlds of their CWs' edge weights (one slice alone can carry more high-k
            # weight than Psi). Above the tolerance, the world with the largest weight fails.
            edge_bad = np.zeros(finite_cw.shape, dtype=bool)
            mean_edge = np.zeros(finite_cw.shape[1])
            if np.any(finite_cw):
                e = np.where(finite_cw, edge, np.nan)
                with np.errstate(invalid="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # a CW column with no live world
                    mean_edge = np.nan_to_num(np.nanmean(e, axis=0))
                self.max_spectral_edge = max(self.max_spectral_edge, float(np.max(mean_edge)))
                for c in np.flatnonzero(mean_edge > self.spectral_tolerance):
                    edge_bad[int(np.nanargmax(e[:, c])), c] = True
        else:
            edge = None
            edge_bad = np.zeros(finite_cw.shape, dtype=bool)
        bad_guidance = ~(
            np.isfinite(vals["v"][idx]) & np.isfinite(vals["Q"][idx]) & np.isfinite(vals["e"][idx])
        )
        failures = []
        for row in np.flatnonzero(
            ~finite_cw.all(axis=1) | norm_bad.any(axis=1) | edge_bad.any(axis=1) | no_amp.any(axis=1)
            | bad_guidance.any(axis=1)
        ):
            if not finite_cw[row].all():
                c = int(np.flatnonzero(~finite_cw[row])[0])
                particle, cause = owner[c], "NaN or infinity in a conditional wavefunction"
            elif norm_bad[row].any():
                c = int(np.flatnonzero(norm_bad[row])[0])
                ratio = norms[row, c] / self.norm0[idx[row], c]
                particle = owner[c]
                cause = (
                    f"conditional wavefunction norm changed by a factor {ratio:.6g} without absorbing "
                    f"layers (tolerance {self.norm_tolerance:g})"
                )
            elif edge_bad[row].any():
                c = int(np.flatnonzero(edge_bad[row])[0])
                particle = owner[c]
                cause = (
                    f"the worlds' conditional wavefunctions of this electron carry on average "
                    f"{mean_edge[c]:.1e} of their probability (this world's: {edge[row, c]:.1e}) in the "
                    "top 10% of the grid's wavenumbers: the grid no longer resolves the largest "
                    "momentum (increase grid.points)"
                )
            elif no_amp[row].any():
                particle = int(np.flatnonzero(no_amp[row])[0])
                r = rel[row, particle]
                if self.exchange:
                    cause = (
                        f"singular Slater matrix of the electron's orbital set (relative density "
                        f"{r:.3g} < {self.density_floor:g})"
                    )
                else:
                    cause = (
                        f"trajectory where its conditional wavefunction has no amplitude (relative "
                        f"density {r:.3g} < {self.density_floor:g})"
                    )
            else:
                particle = int(np.flatnonzero(bad_guidance[row])[0])
                cause = "velocity, quantum potential or energy not finite"
            failures.append(
                Failure(int(self.sample_ids[idx[row]]), int(particle), self.step_index, float(t), cause)
            )
        for f in failures:
            self.failed[f.sample_id] = f
            logger.debug("CW failure: sample %d, electron %d, step %d, t = %s: %s", f.sample_id,
                         f.particle, f.step,
                         getattr(self.model, "units", ATOMIC).quantity(f.time, "time"), f.cause)
        self.new_failures = failures
        if not failures:
            return np.zeros(0, dtype=int)
        return idx[np.isin(self.sample_ids[idx], [f.sample_id for f in failures])]

    def _raise_failures(self) -> None:
        if not self.new_failures:
            return
        if self.discard_failures:
            for f in self.new_failures:
                logger.warning(
                    "discarding sample %d (electron %d) at step %d, t = %s: %s",
                    f.sample_id, f.particle, f.step,
                    getattr(self.model, "units", ATOMIC).quantity(f.time, "time"), f.cause,
                )
            return
        raise SampleFailure.from_failures(self.new_failures)

    # ------------------------------------------------------------------ public
    def step(self) -> CWState:
        """Advance every live world by dt (module Integrator).

        Returns
        -------
        CWState
            The state at t + dt (also ``self.state``).

        Raises
        ------
        SampleFailure
            When a world failed the health check at the new state (``discard_failures`` False); the
            state is committed with the failing worlds taken out before the exception is raised.
        """
        old = self.state
        dt = self.dt
        alive = old.alive
        t_new = old.t + dt
        self.step_index += 1
        X_new = np.full_like(old.X, np.nan)
        if np.any(alive):
            X_mid = np.where(alive[:, None], old.X + 0.5 * dt * old.v, np.nan)
            a = _time.perf_counter()
            self.propagator.step(self.psi, old.t, self.owner, X_mid)
            b = _time.perf_counter()
            self.timings["propagate"] += b - a
            X_star = np.where(alive[:, None], old.X + dt * old.v, np.nan)
            v_star = self._velocity(X_star, alive)
            X_new = np.where(alive[:, None], old.X + 0.5 * dt * (old.v + v_star), np.nan)
            self.timings["guidance"] += _time.perf_counter() - b
        # A live world whose new position is not finite failed (NaN velocity at the predictor).
        nan_rows = alive & ~np.all(np.isfinite(X_new), axis=1)
        self.log_weight, keep = absorb_and_keep(self.potentials, self.log_weight, old, X_new, dt,
                                                self.x_min, self.x_max)
        self.previous = old
        self.state = self._build_state(X_new, keep, t_new)
        removed = int(np.sum(alive & ~keep & ~nan_rows))
        if removed:
            logger.debug("t = %s: %d world(s) removed (absorbed or left the grid)",
                         getattr(self.model, "units", ATOMIC).quantity(t_new, "time"), removed)
            self.n_removed += removed
        if np.any(nan_rows):
            extra = []
            for i in np.flatnonzero(nan_rows):
                particle = int(np.flatnonzero(~np.isfinite(X_new[i]))[0])
                f = Failure(int(self.sample_ids[i]), particle, self.step_index, t_new,
                            "non-finite velocity at the predictor position")
                self.failed[f.sample_id] = f
                extra.append(f)
            self.new_failures = self.new_failures + extra
        mark_crossings(self.crossed, self.state, self._order0)
        self._raise_failures()
        return self.state

    def run(self, n_steps: int):
        """Yield ``(step, state)`` for steps 1..n_steps (the initial state is ``self.state``)."""
        for _ in range(int(n_steps)):
            state = self.step()
            yield self.step_index, state
