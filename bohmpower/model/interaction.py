"""Pair interaction W(r) between electrons (atomic units).

Notes
-----
    soft_coulomb   W(r) = 1 / (eps_r sqrt(r^2 + a^2)),   W'(r) = -r / (eps_r (r^2 + a^2)^(3/2)),
                   w_max = W(0) = 1 / (eps_r a)
    harmonic       W(r) = strength r^2 / 2,               W'(r) = strength r,
                   w_max = strength r_max^2 / 2 with r_max the largest separation on the grid
    none           W = W' = 0, w_max = 0

The pair force on particle j from particle k is F_jk = -W'(x_j - x_k).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bohmpower.errors import ConfigError

__all__ = ["INTERACTION_KINDS", "Interaction", "make_interaction"]

INTERACTION_KINDS = ("none", "soft_coulomb", "harmonic")


@dataclass(frozen=True)
class Interaction:
    """Pair interaction W(r).

    Parameters
    ----------
    kind : {"none", "soft_coulomb", "harmonic"}
    softening : float
        a [bohr] (soft_coulomb).
    eps_r : float
        Relative permittivity (soft_coulomb).
    strength : float
        [hartree/bohr^2] (harmonic).
    r_max : float
        Largest separation that occurs [bohr] (the grid length); sets w_max of ``harmonic``.
    """

    kind: str = "none"
    softening: float = 1.0
    eps_r: float = 1.0
    strength: float = 0.0
    r_max: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in INTERACTION_KINDS:
            raise ConfigError(
                "interaction.kind",
                f"unknown {self.kind!r}; allowed: {', '.join(INTERACTION_KINDS)}",
            )
        if self.kind == "soft_coulomb":
            if not self.softening > 0:
                raise ConfigError("interaction.softening", f"must be > 0, got {self.softening}")
            if not self.eps_r > 0:
                raise ConfigError(
                    "interaction.relative_permittivity", f"must be > 0, got {self.eps_r}"
                )

    def w(self, r: np.ndarray | float) -> np.ndarray:
        """W(r) [hartree], vectorised, shape of ``r``."""
        r = np.asarray(r, dtype=float)
        if self.kind == "soft_coulomb":
            return 1.0 / (self.eps_r * np.sqrt(r * r + self.softening**2))
        if self.kind == "harmonic":
            return 0.5 * self.strength * r * r
        return np.zeros_like(r)

    def dw(self, r: np.ndarray | float) -> np.ndarray:
        """dW/dr [hartree/bohr], vectorised, shape of ``r``."""
        r = np.asarray(r, dtype=float)
        if self.kind == "soft_coulomb":
            return -r / (self.eps_r * (r * r + self.softening**2) ** 1.5)
        if self.kind == "harmonic":
            return self.strength * r
        return np.zeros_like(r)

    @property
    def w_max(self) -> float:
        """Largest |W| over separations 0 <= r <= r_max [hartree] (what the resolution rules count)."""
        if self.kind == "soft_coulomb":
            return 1.0 / (self.eps_r * self.softening)
        if self.kind == "harmonic":
            return 0.5 * abs(self.strength) * self.r_max**2
        return 0.0


def make_interaction(section: Any | None, r_max: float) -> Interaction:
    """`Interaction` from an atomic-unit ``InteractionConfig`` (None or kind "none": no interaction).

    Parameters
    ----------
    section : InteractionConfig or None
        kind, softening, relative_permittivity, strength.
    r_max : float
        Largest separation on the grid [bohr] (grid length).
    """
    if section is None or section.kind in (None, "none"):
        return Interaction("none", r_max=r_max)
    eps_r = getattr(section, "relative_permittivity", None)
    eps_r = 1.0 if eps_r is None else float(eps_r)
    if section.kind == "soft_coulomb":
        a = getattr(section, "softening", None)
        if a is None:
            raise ConfigError("interaction.softening", "required for kind = 'soft_coulomb'")
        return Interaction("soft_coulomb", softening=float(a), eps_r=eps_r, r_max=r_max)
    if section.kind == "harmonic":
        strength = getattr(section, "strength", None)
        if strength is None:
            raise ConfigError("interaction.strength", "required for kind = 'harmonic'")
        return Interaction("harmonic", strength=float(strength), eps_r=eps_r, r_max=r_max)
    return Interaction(section.kind)  # raises with the allowed kinds
