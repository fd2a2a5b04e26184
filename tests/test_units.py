"""Unit systems: pint agrees with every unit string and conversion factor; physical constants come out right."""

from __future__ import annotations

import math

import numpy as np
import pint
import pytest

from bohmpower.errors import ConfigError
from bohmpower.units import (
    _DIMENSIONS,
    AU_TIME_FS,
    BOHR_NM,
    COULOMB_EV_NM,
    DIMENSIONS,
    HARTREE_EV,
    UnitSystem,
)

UREG = pint.UnitRegistry()
ATOMIC = UnitSystem("atomic")
DEVICE = UnitSystem("device")

# The package uses CODATA 2018 (the project's contract); pint 0.25 carries CODATA 2022, whose Bohr radius
# is 6.8e-10 smaller relative to the 2018 value (hartree and hbar moved by < 1e-12). So a factor with length
# to the power n differs between the two by about |n| * 6.8e-10: the tolerance is 1e-9 per power of length
# (and 1e-9 for length-free dimensions). A wrong constant or exponent would be off by far more.
PINT_RTOL = 1e-9


def pint_rtol(dimension: str) -> float:
    n_length = _DIMENSIONS[dimension][0][0]
    return PINT_RTOL * max(1, abs(n_length))


def test_vocabulary_is_the_agreed_one():
    assert set(DIMENSIONS) == {
        "dimensionless",
        "length",
        "energy",
        "time",
        "mass",
        "wavenumber",
        "frequency",
        "angular_frequency",
        "velocity",
        "force",
        "electric_field",
        "density",
        "current",
        "energy_density",
        "power",
        "power_density",
        "energy_current",
        "curvature",
        "probability",
    }


@pytest.mark.parametrize("dimension", DIMENSIONS)
@pytest.mark.parametrize("system", [ATOMIC, DEVICE])
def test_every_unit_string_parses_with_pint(system, dimension):
    # parses, and names the same physical dimension in every unit system
    reference = UREG.parse_units(UnitSystem("atomic").unit(dimension)).dimensionality
    assert UREG.parse_units(system.unit(dimension)).dimensionality == reference


@pytest.mark.parametrize("dimension", DIMENSIONS)
def test_device_factors_agree_with_pint(dimension):
    """One device unit expressed in atomic units, by pint, equals DEVICE.factor."""
    device_unit = DEVICE.unit(dimension)
    atomic_unit = ATOMIC.unit(dimension)
    expected = UREG.Quantity(1.0, device_unit).to(atomic_unit).magnitude
    rtol = pint_rtol(dimension)
    assert DEVICE.factor(dimension) == pytest.approx(expected, rel=rtol)
    assert DEVICE.to_atomic(1.0, dimension) == pytest.approx(expected, rel=rtol)
    assert DEVICE.from_atomic(expected, dimension) == pytest.approx(1.0, rel=rtol)


@pytest.mark.parametrize("dimension", DIMENSIONS)
def test_atomic_system_is_the_identity(dimension):
    x = np.array([-2.5, 0.0, 3.0])
    np.testing.assert_array_equal(ATOMIC.to_atomic(x, dimension), x)
    assert ATOMIC.from_atomic(1.25, dimension) == 1.25


def test_codata_constants():
    """The module's constants are CODATA 2018 (pint) and mutually consistent."""
    assert UREG.Quantity(BOHR_NM, "nm").to("bohr").magnitude == pytest.approx(1.0, rel=PINT_RTOL)
    assert UREG.Quantity(HARTREE_EV, "eV").to("hartree").magnitude == pytest.approx(
        1.0, rel=PINT_RTOL
    )
    assert UREG.Quantity(AU_TIME_FS, "fs").to("atomic_unit_of_time").magnitude == pytest.approx(
        1.0, rel=PINT_RTOL
    )
    # e^2/(4 pi eps0) = 1 hartree bohr = 1.439964 eV nm (SPEC.md quotes 7 digits).
    coulomb = (UREG.elementary_charge**2 / (4 * math.pi * UREG.vacuum_permittivity)).to("eV*nm")
    assert COULOMB_EV_NM == pytest.approx(coulomb.magnitude, rel=PINT_RTOL)
    # SPEC.md writes the value truncated to six decimals (1.4399645...).
    assert COULOMB_EV_NM == pytest.approx(1.439964, abs=1e-6)
    # hbar = 1 hartree x 1 atomic unit of time.
    hbar = UREG.Quantity(1.0, "hbar").to("eV*fs").magnitude
    assert HARTREE_EV * AU_TIME_FS == pytest.approx(hbar, rel=PINT_RTOL)


def test_kinetic_energy_constant_in_device_units():
    """hbar^2/(2 m_e) is 1/2 hartree bohr^2 in atomic units; in device units it is 0.0380998 eV nm^2."""
    expected = UREG.Quantity(1.0, "hbar") ** 2 / (2 * UREG.Quantity(1.0, "electron_mass"))
    expected = expected.to("eV*nm**2").magnitude
    got = DEVICE.from_atomic(0.5, "energy") / DEVICE.from_atomic(1.0, "wavenumber") ** 2
    assert got == pytest.approx(expected, rel=pint_rtol("curvature"))  # hartree bohr^2: two lengths
    assert got == pytest.approx(0.0380998, abs=1e-7)


def test_derived_dimensions_are_products_of_base_ones():
    f = DEVICE.factor
    rel = 1e-14  # exact identities up to round-off of a few products
    assert f("power") == pytest.approx(f("energy") / f("time"), rel=rel)
    assert f("energy_current") == pytest.approx(f("power"), rel=rel)
    assert f("power_density") == pytest.approx(f("energy") / f("length") / f("time"), rel=rel)
    assert f("velocity") == pytest.approx(f("length") / f("time"), rel=rel)
    assert f("force") == pytest.approx(f("energy") / f("length"), rel=rel)
    assert f("curvature") == pytest.approx(f("energy") / f("length") ** 2, rel=rel)
    assert f("current") == pytest.approx(1 / f("time"), rel=rel)
    assert f("wavenumber") == pytest.approx(1 / f("length"), rel=rel)
    # q = -e: the force q E in eV/nm has the magnitude of E in V/nm.
    assert f("electric_field") == pytest.approx(f("force"), rel=rel)
    for dim in ("mass", "dimensionless", "probability"):
        assert f(dim) == 1.0


def test_arrays_and_floats():
    x = np.linspace(-3, 3, 7).reshape(7, 1)
    y = DEVICE.to_atomic(x, "length")
    assert y.shape == x.shape and y is not x
    np.testing.assert_allclose(DEVICE.from_atomic(y, "length"), x, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(y, x / BOHR_NM, rtol=1e-15)
    assert isinstance(DEVICE.to_atomic(2, "energy"), float)
    assert DEVICE.to_atomic(2, "energy") == pytest.approx(2 / HARTREE_EV, rel=1e-15)


def test_refusals():
    with pytest.raises(ConfigError) as e:
        UnitSystem("SI")
    assert e.value.key == "units.system"
    with pytest.raises(ValueError, match="unknown dimension"):
        DEVICE.unit("charge_density")
    with pytest.raises(ValueError, match="unknown dimension"):
        DEVICE.to_atomic(1.0, "lenght")


def test_equality():
    assert UnitSystem("device") == DEVICE and DEVICE != ATOMIC
    assert len({UnitSystem("device"), DEVICE}) == 1
