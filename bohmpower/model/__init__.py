"""The physical model of a run in atomic units: grid, U0, drives, interaction, absorber, volumes, initial state.

`build_model(config, command)` maps a `RunConfig` onto the lower-level functions of this package (each of
which takes explicit numbers and arrays, so it is testable on its own), applies the resolution rules and
returns ``(model, warnings)``. Warnings (resolution, absorber quality, periodic seam, packet tails) are
strings, never printed (the caller decides how to show them); the same tuple is kept as
``Model.warnings``. Every number in a refusal or a warning is written in the run file's unit system
(``Model.units``), with the value to write where there is one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bohmpower.errors import ConfigError
from bohmpower.model.absorber import (
    ABSORBER_TOLERANCE,
    absorber_k_range,
    absorber_reflection_transmission,
    default_absorber_strength,
    minimum_absorber_width,
)
from bohmpower.model.absorber import (
    gamma as absorber_gamma,
)
from bohmpower.model.fields import Drive, make_drives, seam_region
from bohmpower.model.grid import Grid
from bohmpower.model.initial import (
    check_independent,
    many_body_product,
    orbitals_from_config,
    packet_list,
)
from bohmpower.model.interaction import Interaction, make_interaction
from bohmpower.model.potentials import static_potential
from bohmpower.model.resolution import (
    ResolutionReport,
    orbital_k_content,
    packet_k_content,
    resolve,
)
from bohmpower.model.spectrum import MAX_DENSE_POINTS, lowest_eigenstates
from bohmpower.units import ATOMIC, UnitSystem

__all__ = ["AbsorberInfo", "Drive", "Grid", "Interaction", "Model", "build_model"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AbsorberInfo:
    """How the absorbing layers were set up (absorbing grids only).

    Attributes
    ----------
    width, strength : float
        [bohr], [hartree]; ``automatic`` True when the strength was chosen by
        `default_absorber_strength`.
    k_lo, k_hi : float
        Wavenumber range the layers were judged on [1/bohr] (`absorber_k_range`).
    max_reflection_transmission : float
        max of R + T over that range (probability; SPEC asks for < 1e-3).
    """

    width: float
    strength: float
    automatic: bool
    k_lo: float
    k_hi: float
    max_reflection_transmission: float


@dataclass(frozen=True, eq=False)
class Model:
    """Everything the propagators and observables need, in atomic units (docs/design.md).

    Attributes
    ----------
    grid : Grid
    n_particles : int
    mass : float
        [m_e]
    statistics : {"fermion", "distinguishable"}
    u0 : ndarray, shape (n_x,)
        Static potential [hartree].
    gamma : ndarray, shape (n_x,)
        Absorbing potential Gamma(x) >= 0 [hartree] (the Hamiltonian gets -i Gamma); zeros if periodic.
    drives : tuple of Drive
        One per [[field]], in file order.
    interaction : Interaction
    volumes : tuple of Volume
    include_drive_potential : bool
        chi of THEORY.md (q*phi inside h_k).
    orbitals : ndarray, complex, shape (n_orb, n_x), or None
        Initial orbitals (normalised); None when ``many_body_state`` is set.
    many_body_state : int or None
    config : RunConfig
        The atomic-unit configuration.
    periodic : bool
        grid.boundary == "periodic".
    seam : ndarray of bool, shape (n_x,)
        Points where a periodic linear_drop's return field acts (all False otherwise); the run loop warns
        when the density reaches them.
    absorber : AbsorberInfo or None
        None on periodic grids.
    resolution : ResolutionReport
    warnings : tuple of str
        Everything build_model found worth saying (not printed).
    units : UnitSystem
        The run file's unit system: the arrays are in atomic units, but every message about the run
        (warnings, run-time log lines, errors) is written in this system.
    """

    grid: Grid
    n_particles: int
    mass: float
    statistics: str
    u0: np.ndarray = field(repr=False)
    gamma: np.ndarray = field(repr=False)
    drives: tuple[Drive, ...]
    interaction: Interaction
    volumes: tuple[Any, ...]
    include_drive_potential: bool
    orbitals: np.ndarray | None = field(repr=False)
    many_body_state: int | None
    config: Any = field(repr=False)
    periodic: bool = True
    seam: np.ndarray | None = field(default=None, repr=False)
    absorber: AbsorberInfo | None = None
    resolution: ResolutionReport | None = None
    warnings: tuple[str, ...] = ()
    units: UnitSystem = ATOMIC

    @property
    def absorber_report(self) -> str | None:
        """One line on the absorbing layers for `bohmpower check` (None on periodic grids)."""
        a = self.absorber
        if a is None:
            return None
        how = "automatic" if a.automatic else "given"
        q = self.units.quantity
        return (
            f"width {q(a.width, 'length')}, strength {q(a.strength, 'energy')} ({how}); reflection "
            f"plus transmission <= {a.max_reflection_transmission:.2g} for k in "
            f"{self.units.interval(a.k_lo, a.k_hi, 'wavenumber')}"
        )

    def drive_potential(self, t: float) -> np.ndarray:
        """q*phi(x, t) = sum_i f_i(t) g_i(x) on the grid [hartree], shape (n_x,)."""
        out = np.zeros(self.grid.n_x)
        for d in self.drives:
            out += d.profile(t) * d.potential_shape
        return out

    def drive_force(self, t: float) -> np.ndarray:
        """q*E(x, t) = sum_i f_i(t) (-g_i'(x)) on the grid [hartree/bohr], shape (n_x,)."""
        out = np.zeros(self.grid.n_x)
        for d in self.drives:
            out += d.profile(t) * d.force_shape
        return out

    def drive_potential_dt(self, t: float) -> np.ndarray:
        """q*d_t phi(x, t) = sum_i f_i'(t) g_i(x) on the grid [hartree/a.u. time], shape (n_x,)."""
        out = np.zeros(self.grid.n_x)
        for d in self.drives:
            out += d.profile_dt(t) * d.potential_shape
        return out

    def u0_at(self, x: np.ndarray) -> np.ndarray:
        """U0 at arbitrary points [hartree] (the same pieces as ``u0``, evaluated off the grid).

        Used where fields are formed on the refined grid and along trajectories.
        """
        from types import SimpleNamespace

        x = np.asarray(x, dtype=float)
        eps_r = getattr(self.config.interaction, "relative_permittivity", None)
        points = SimpleNamespace(x=x.ravel(), n_x=x.size)
        u = static_potential(self.config.potential, points, self.mass,
                             1.0 if eps_r is None else float(eps_r))
        return u.reshape(x.shape)

    def gamma_at(self, x: np.ndarray) -> np.ndarray:
        """Absorbing rate Gamma at arbitrary points inside the cell [hartree] (zeros if periodic)."""
        x = np.asarray(x, dtype=float)
        if self.absorber is None:
            return np.zeros(x.shape)
        g = self.grid
        return absorber_gamma(x, g.x_min, g.x_max, self.absorber.width, self.absorber.strength)

    def initial_state(self) -> np.ndarray:
        """Psi0 = the normalised Slater determinant / product of ``orbitals``, shape (n_x,)*N.

        Raises
        ------
        ValueError
            When the model starts from ``many_body_state`` (no orbitals): use exact.eigen.
        """
        if self.orbitals is None:
            raise ValueError("this model starts from many_body_state; it has no orbitals")
        return many_body_product(self.orbitals, self.statistics, self.grid.dx)


def _k_content(orbitals: np.ndarray | None, packets: list, n_packets: int, grid: Grid) -> float:
    k = 0.0
    for _, _, width, k0 in packets:
        k = max(k, packet_k_content(k0, width))
    if orbitals is not None:
        for phi in orbitals[n_packets:]:
            k = max(k, orbital_k_content(phi, grid.k))
    return k


def build_model(
    config: Any, command: str = "exact", units: UnitSystem | None = None
) -> tuple[Model, list[str]]:
    """Build the `Model` of a run and apply the resolution rules.

    Parameters
    ----------
    config : RunConfig
        Any unit system (converted with ``to_atomic()``).
    command : {"exact", "run", "check"}
        "exact" and "run" first apply ``config.check_command``; the exact-run memory rule applies to
        "exact", and to "check" when the run file has no [method] (an exact run file).
    units : UnitSystem, optional
        The unit system messages are written in; default: ``config``'s own (give it when ``config``
        was already converted to atomic units).

    Returns
    -------
    model : Model
        With ``resolution`` and ``absorber`` filled in (and ``warnings``, a tuple copy).
    warnings : list of str
        Resolution, absorber, seam and packet warnings, not printed.

    Raises
    ------
    ConfigError
        Naming the key to change: grid.points (resolution, memory), time.dt, potential[i].file,
        field[i].*, initial.eigenstate[i].index (unbound), initial (dependent fermion orbitals, count),
        grid.absorber_width.

    Notes
    -----
    k_content: packets |k0| + 6/(2 width); eigenstate orbitals, the |k| below which 1 - 1e-10 of the
    spectral weight lies; for many_body_state, the same measure applied to the lowest N (fermions) or
    the lowest one (distinguishable) eigenstates of U0, a non-interacting stand-in for the unknown state.
    The absorber is judged on `absorber_k_range` (k_hi = k_reach).
    """
    if command not in ("exact", "run", "check"):
        raise ValueError(f"unknown command {command!r}; expected 'exact', 'run' or 'check'")
    if units is None:
        units = UnitSystem(config.units.system)
    q = units.quantity
    if config.units.system != "atomic":
        config = config.to_atomic()
    if command in ("exact", "run") and hasattr(config, "check_command"):
        config.check_command(command)
    exact_run = command == "exact" or (command == "check" and config.method is None)
    warnings: list[str] = []

    gc = config.grid
    grid = Grid(float(gc.x_min), float(gc.x_max), int(gc.points))
    periodic = gc.boundary == "periodic"
    n = int(config.particles.count)
    mass = float(config.particles.mass)
    statistics = config.particles.statistics

    interaction = make_interaction(config.interaction, r_max=grid.length)
    eps_r = (
        getattr(config.interaction, "relative_permittivity", None) if config.interaction else None
    )
    eps_r = 1.0 if eps_r is None else float(eps_r)
    u0 = static_potential(config.potential, grid, mass, eps_r)
    u0.flags.writeable = False

    drives, w = make_drives(config.field, grid, periodic, units)
    warnings += w
    seam = np.zeros(grid.n_x, dtype=bool)
    if periodic and any(d.kind == "linear_drop" for d in drives):
        seam = seam_region(grid)

    layer_mask = None
    width = None
    if not periodic:
        width = gc.absorber_width
        if width is None or not width > 0 or 2.0 * width >= grid.length:
            raise ConfigError(
                "grid.absorber_width",
                "boundary = 'absorbing' needs 0 < absorber_width < (x_max - x_min)/2 (got "
                f"{'none' if width is None else q(width, 'length')})",
            )
        width = float(width)
        layer_mask = absorber_gamma(grid.x, grid.x_min, grid.x_max, width, 1.0) > 0

    init = config.initial
    many_body_state = init.many_body_state
    packets = packet_list(init)
    if many_body_state is None:
        orbitals, w = orbitals_from_config(init, grid, u0, mass, layer_mask, units)
        warnings += w
        if orbitals.shape[0] != n:
            raise ConfigError(
                "initial",
                f"{orbitals.shape[0]} orbitals for particles.count = {n}: give one orbital per electron",
            )
        if statistics == "fermion" and n > 1:
            check_independent(orbitals, grid.dx, key="initial")
        orbitals.flags.writeable = False
        k_content = _k_content(orbitals, packets, len(packets), grid)
        if seam.any():
            p_seam = float(np.max(np.sum(np.abs(orbitals[:, seam]) ** 2, axis=1) * grid.dx))
            if p_seam > 1e-6:
                warnings.append(
                    f"initial: probability {p_seam:.2g} of an orbital starts in the periodic return-field "
                    "region around the seam"
                )
    else:
        orbitals = None
        if grid.n_x <= MAX_DENSE_POINTS:
            n_proxy = n if statistics == "fermion" else 1
            _, proxy = lowest_eigenstates(u0, grid, mass, n_proxy)
            k_content = max(orbital_k_content(phi, grid.k) for phi in proxy)
        else:
            k_content = 0.0
            warnings.append(
                "initial.many_body_state: grid too large to estimate the state's wavenumber content; "
                "only the bias and interaction enter the resolution rules"
            )

    num = config.numerics
    report = resolve(
        k_content=k_content,
        mass=mass,
        length=grid.length,
        n_x=grid.n_x,
        dt=float(config.time.dt),
        u0_range=float(np.ptp(u0)),
        bias_drop=float(sum(d.drop for d in drives)),
        w_max=interaction.w_max,
        resolution_fraction=float(num.resolution_fraction),
        max_phase=float(num.max_phase),
        warn_phase=float(num.warn_phase),
        n_particles=n if exact_run else None,
        max_memory_gb=num.max_memory_gb,
        t_end=float(config.time.t_end),
        window=None if config.time.window is None else float(config.time.window),
        units=units,
        order=int(num.order) if exact_run else 2,  # conditional wavefunctions: Strang, order 2
    )
    warnings = list(report.warnings) + warnings

    absorber = None
    if periodic:
        gamma = np.zeros(grid.n_x)
    else:
        packet_ks = [(k0, wd) for _, _, wd, k0 in packets]
        k_lo, k_hi = absorber_k_range(width, report.k_reach, packet_ks)
        if gc.absorber_strength is None:
            strength, max_rt = default_absorber_strength(width, mass, k_lo, k_hi)
            automatic = True
        else:
            strength = float(gc.absorber_strength)
            ks = np.geomspace(k_lo, k_hi, 32) if k_hi > k_lo else np.array([k_lo])
            max_rt = float(np.max(absorber_reflection_transmission(strength, width, mass, ks)))
            automatic = False
        absorber = AbsorberInfo(width, strength, automatic, k_lo, k_hi, max_rt)
        if max_rt > ABSORBER_TOLERANCE:
            warnings.append(
                _absorber_warning(units, grid, mass, width, strength, automatic, max_rt, k_lo, k_hi,
                                  report.k_reach, packet_ks)
            )
        gamma = absorber_gamma(grid.x, grid.x_min, grid.x_max, width, strength)
    gamma.flags.writeable = False

    from bohmpower.model.volume import Volume

    volumes = tuple(
        Volume(v.name, float(v.x_min), float(v.x_max), float(v.smoothing)) for v in config.volume
    )

    for msg in warnings:
        logger.debug("build_model: %s", msg)
    q_dt = units.quantity(float(config.time.dt), "time")
    model = Model(
        grid=grid,
        n_particles=n,
        mass=mass,
        statistics=statistics,
        u0=u0,
        gamma=gamma,
        drives=drives,
        interaction=interaction,
        volumes=volumes,
        include_drive_potential=bool(config.energy.include_drive_potential),
        orbitals=orbitals,
        many_body_state=many_body_state,
        config=config,
        periodic=periodic,
        seam=seam,
        absorber=absorber,
        resolution=report,
        warnings=tuple(warnings),
        units=units,
    )
    logger.debug("build_model: %d electron(s) on %d points, dt = %s", n, grid.n_x, q_dt)
    if model.absorber_report:
        logger.debug("build_model: absorbing layers: %s", model.absorber_report)
    return model, list(warnings)


def _absorber_warning(units, grid, mass, width, strength, automatic, max_rt, k_lo, k_hi, k_reach,
                      packet_ks) -> str:
    """The absorbing layers let back too much: say how much, and the absorber_width to write."""
    q = units.quantity
    text = (
        f"grid.absorber_width: the absorbing layers (width {q(width, 'length')}, strength "
        f"{q(strength, 'energy')}) let back up to {max_rt:.2g} of the probability (reflection plus "
        f"transmission) for wavenumbers in {units.interval(k_lo, k_hi, 'wavenumber')}, above "
        f"{ABSORBER_TOLERANCE:g}: "
    )
    if not automatic:
        auto_strength, auto_rt = default_absorber_strength(width, mass, k_lo, k_hi)
        if auto_rt <= ABSORBER_TOLERANCE:
            return text + (
                "leave grid.absorber_strength out (the automatic strength at this width, "
                f"{q(auto_strength, 'energy')}, lets back {auto_rt:.2g})"
            )
    max_factor = 8.0  # wider layers cost seconds per trial (the slab count grows with the width)
    needed = minimum_absorber_width(width, mass, k_reach, packet_ks, units, max_factor=max_factor)
    if needed is None:
        slowest = min((abs(k0) - 3.0 / (2.0 * wd) for k0, wd in packet_ks), default=None)
        why = ("" if slowest is None else
               f"; the packets' slowest wavenumber |k0| - 3/(2 width) is "
               f"{q(slowest, 'wavenumber', digits=3)}, and a layer is judged down to it or to "
               "2 pi/absorber_width, whichever is larger, so a wider layer also has slower waves "
               "to absorb: faster or less spread packets (larger |k0| or width) narrow that range")
        return text + (
            f"no absorber_width up to {q(max_factor * width, 'length', digits=3)} brings it below "
            f"{ABSORBER_TOLERANCE:g}{why}"
        )
    text += ("widen the absorbing layers to absorber_width >= "
             f"{q(needed, 'length', digits=3, converted=True)}")
    if not automatic:
        text += " and leave grid.absorber_strength out (automatic)"
    grid_length = units.from_atomic(grid.length, "length")
    if needed >= grid_length / 4:
        text += (
            f"; absorber_width must stay below (x_max - x_min)/4, so widen the grid too: "
            f"x_max - x_min > {q(4 * needed, 'length', digits=4, converted=True)} (now "
            f"{q(grid_length, 'length', converted=True)})"
        )
    return text
