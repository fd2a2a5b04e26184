"""Injection of electrons from Fermi reservoirs (the BITLLES injection model; docs/devices.md).

Each reservoir s (left, right) fills the incoming states of its lead. Energies above the lead's band
bottom U_s are cut into ``n_cells`` cells of width dE on (energy_min, energy_max]; cell j has the
central energy E_sj = U_s + energy_min + (j + 1/2) dE and wavenumber k_sj = +-sqrt(2 m (E_sj -
U_s))/hbar (towards the device).

Attempt rule (the injection model of the BITLLES simulator: H. Lopez, G. Albareda, X. Cartoixa, J.
Sune and X. Oriols, J. Comput. Electron. 7, 213 (2008); reviewed with the rest of BITLLES in A.
Benseny et al., Eur. Phys. J. D 68, 286 (2014), arXiv:1406.3151; the Bohmian many-electron scheme it
feeds is X. Oriols, Phys. Rev. Lett. 98, 066803 (2007)): a phase-space cell of length L and width dk
holds one state (L dk = 2 pi, spinless); its content enters the device every t0 = L/v. With v = hbar
k/m and dE = hbar v dk this is

.. math::

    t_0 = \\frac{L}{v} = \\frac{2\\pi}{v\\,dk} = \\frac{h}{dE},

the same for every energy cell. Every t0 one injection into the cell is attempted and accepted with
probability f_s(E_sj): the state is occupied with the Fermi-Dirac probability, and at most one
electron enters per state (Pauli exclusion between electrons injected into the same state: two
electrons of one cell are always a whole t0 apart, i.e. one cell length L = v t0 apart in the lead).
The mean particle current a reservoir sends is then sum_j f_s(E_sj)/t0 = (1/h) sum_j f_s(E_sj) dE ->
(1/h) int f_s dE, the incoming flux of a Fermi lead, and with transmission T the current of the
Landauer formula.

Each world draws its own phase phi_sj ~ U(0, t0) per cell (attempts at phi_sj + n t0): with it the
expected number of attempts in any time interval is its length over t0 exactly, so the estimate is
unbiased even where the run is shorter than t0; within a world the attempts are regular, as in the
model (the partition noise of Bernoulli acceptance is the model's shot noise).

Each accepted electron is a Gaussian packet of density width sigma (``packet_width``) centred at the
injection point x_s (by default 3 sigma in from the absorbing layer), wavenumber k_sj, placed at the
first time step at or after its attempt time; its Bohmian position is drawn from |psi|^2 at
injection (a normal deviate of standard deviation sigma, redrawn in the rare case it falls outside
[x_s - 3 sigma, x_s + 3 sigma]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .landauer import fermi

__all__ = ["Injection", "Reservoir", "packet_transmission"]

LEFT, RIGHT = 0, 1


@dataclass(frozen=True)
class Reservoir:
    """One reservoir, atomic units.

    Attributes
    ----------
    side : int
        0 = left (electrons move right), 1 = right (electrons move left).
    band_bottom : float
        U_s, the lead potential at the injection point [hartree].
    mu : float
        Electrochemical potential U_s + E_F [hartree].
    kt : float
        k_B T [hartree].
    x_inject : float
        Packet centre [bohr].
    """

    side: int
    band_bottom: float
    mu: float
    kt: float
    x_inject: float


@dataclass(frozen=True)
class Injection:
    """The energy cells and attempt rule shared by both reservoirs (module Notes), atomic units.

    Attributes
    ----------
    reservoirs : tuple of Reservoir
        (left, right).
    energy_max : float
        Top of the cells above each band bottom [hartree].
    n_cells : int
    energy_min : float
        Bottom of the cells above each band bottom [hartree].
    width : float
        Packet density width sigma [bohr].
    mass : float
        [m_e].
    """

    reservoirs: tuple[Reservoir, Reservoir]
    energy_max: float
    n_cells: int
    width: float
    mass: float
    energy_min: float = 0.0

    @property
    def d_energy(self) -> float:
        """Cell width dE [hartree]."""
        return (self.energy_max - self.energy_min) / self.n_cells

    @property
    def period(self) -> float:
        """Attempt period t0 = h/dE [a.u. time] (hbar = 1)."""
        return 2.0 * np.pi / self.d_energy

    def kinetic(self) -> np.ndarray:
        """Cell-centre kinetic energies energy_min + (j + 1/2) dE, shape (n_cells,) [hartree]."""
        return self.energy_min + (np.arange(self.n_cells) + 0.5) * self.d_energy

    def wavenumbers(self, side: int) -> np.ndarray:
        """k_sj, signed towards the device, shape (n_cells,) [1/bohr]."""
        k = np.sqrt(2.0 * self.mass * self.kinetic())
        return k if side == LEFT else -k

    def occupations(self, side: int) -> np.ndarray:
        """f_s(E_sj), shape (n_cells,)."""
        r = self.reservoirs[side]
        return fermi(r.band_bottom + self.kinetic(), r.mu, r.kt)

    def schedule(self, rng: np.random.Generator, t_end: float) -> dict[str, np.ndarray]:
        """Accepted injections of one world on [0, t_end].

        Returns
        -------
        dict of ndarray, one entry per electron, sorted by time:
            ``time`` [a.u. time], ``side`` (0/1), ``cell``, ``x0`` (initial Bohmian position
            [bohr]).
        """
        t0 = self.period
        times, sides, cells = [], [], []
        for side in (LEFT, RIGHT):
            phase = rng.uniform(0.0, t0, self.n_cells)
            f = self.occupations(side)
            n_max = int(np.ceil(t_end / t0)) + 1
            att = phase[:, None] + t0 * np.arange(n_max)[None, :]
            accept = rng.uniform(size=att.shape) < f[:, None]
            ok = accept & (att <= t_end)
            j, _ = np.nonzero(ok)
            times.append(att[ok])
            sides.append(np.full(j.size, side))
            cells.append(j)
        t = np.concatenate(times)
        order = np.argsort(t, kind="stable")
        side = np.concatenate(sides)[order]
        cell = np.concatenate(cells)[order]
        x_c = np.array([r.x_inject for r in self.reservoirs])[side]
        z = rng.standard_normal(t.size)
        bad = np.abs(z) > 3.0
        while np.any(bad):
            z[bad] = rng.standard_normal(int(bad.sum()))
            bad = np.abs(z) > 3.0
        return {"time": t[order], "side": side, "cell": cell, "x0": x_c + self.width * z}

    def expected_rate(self, side: int) -> float:
        """Mean electrons per unit time sent by reservoir ``side``: sum_j f_sj / t0 [1/a.u. time]."""
        return float(np.sum(self.occupations(side)) / self.period)


def packet_transmission(injection: Injection, transmission_of, side: int, n_k: int = 801
                        ) -> np.ndarray:
    """<T>_j = int |phi_j(k)|^2 T(E(k)) dk of each cell's packet (the model's own transmission).

    |phi_j(k)|^2 is the normal density of mean |k_sj| and standard deviation 1/(2 sigma); components
    that move away from the device (k < 0 after orientation) never reach it and count as T = 0.

    Parameters
    ----------
    injection : Injection
    transmission_of : callable
        T(E) for an array of absolute energies [hartree].
    side : int
    n_k : int
        Quadrature nodes over +-6 standard deviations.

    Returns
    -------
    ndarray, shape (n_cells,)
    """
    r = injection.reservoirs[side]
    k0 = np.abs(injection.wavenumbers(side))
    s_k = 1.0 / (2.0 * injection.width)
    u = np.linspace(-6.0, 6.0, n_k)
    k = k0[:, None] + s_k * u[None, :]
    w = np.exp(-0.5 * u**2)
    w /= np.trapezoid(w, u)
    e = r.band_bottom + k**2 / (2.0 * injection.mass)
    t = np.asarray(transmission_of(e.ravel()), dtype=float).reshape(e.shape)
    t = np.where(k > 0, t, 0.0)
    return np.trapezoid(t * w[None, :], u, axis=1)
