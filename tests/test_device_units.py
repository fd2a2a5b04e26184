"""A run file in device units (nm, eV, fs) hears back in nm, eV and fs, never in atomic units.

Each refusal, hint, warning, run-time log line and `bohmpower check` line a device-unit run file can
meet is driven here: the message must carry no atomic unit name, and the value a hint names, written
into the run file, must be accepted (the refusal gone, or the warning silent). Results can be had in
the run's units with `to_units`, number for number as in the result file.
"""

from __future__ import annotations

import logging
import math
import re

import h5py
import numpy as np
import pytest

from bohmpower import cli
from bohmpower.config import parse_config
from bohmpower.driver import CWSolver, ExactSolver, HealthMonitor
from bohmpower.errors import ConfigError, NumericalError
from bohmpower.model import build_model
from bohmpower.model.resolution import check_time_step
from bohmpower.units import AU_TIME_FS, BOHR_NM, HARTREE_EV, UnitSystem, format_number
from tests.conftest import REPO, run_dict, write_run_file

DEVICE = UnitSystem("device")
#: Spellings of atomic units that must never reach a device-unit user.
ATOMIC_NAMES = ("bohr", "hartree", "atomic_unit", "a.u.")
NUMBER = r"(-?[0-9.]+(?:e[-+]?[0-9]+)?)"

# One GaAs electron (0.067 m_e) at 0.3 eV heading for a 0.1 eV barrier; 100 fs in steps of 0.2 fs.
# k0 = sqrt(0.3 * 0.067 / 0.0380998) = 0.726 1/nm; k_content = k0 + 6/(2 * 5 nm) = 1.326 1/nm.
SECTIONS = dict(
    units={"system": "device"},
    particles={"count": 1, "mass": 0.067},
    grid={"x_min": -100.0, "x_max": 100.0, "points": 256, "boundary": "absorbing",
          "absorber_width": 20.0},
    time={"dt": 0.2, "t_end": 100.0, "save_every": 20, "window": 10.0},
    potential=[{"kind": "barrier", "center": 0.0, "width": 3.0, "height": 0.1}],
    initial={"packet": [{"center": -40.0, "width": 5.0, "energy": 0.3}]},
    volume=[{"name": "left", "x_min": -30.0, "x_max": -5.0}],
)


def device(**changes) -> dict:
    """The device-unit run file with sections (or keys inside them, as "grid.points") changed."""
    data = run_dict(**SECTIONS)
    for key, value in changes.items():
        if "." in key:
            section, name = key.split(".")
            if value is None:
                data[section].pop(name, None)
            else:
                data[section][name] = value
        else:
            data[key] = value
    return data


def config_of(data: dict):
    return parse_config(data, REPO)


def assert_device_text(text: str) -> None:
    for name in ATOMIC_NAMES:
        assert name not in text, f"{name!r} in a device-unit message: {text}"


def refusal(data: dict, command: str = "exact") -> ConfigError:
    with pytest.raises(ConfigError) as e:
        build_model(config_of(data), command)
    assert_device_text(str(e.value))
    return e.value


def hinted(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"no {pattern!r} in: {text}"
    return float(m.group(1))


# ------------------------------------------------------------------------------- the formatter

def test_bounds_are_rounded_to_the_safe_side():
    assert format_number(0.74639, 3, "down") == "0.746"
    assert format_number(0.74639, 3, "up") == "0.747"
    assert format_number(0.7469, 3, "down") == "0.746"  # nearest would be 0.747: above the bound
    assert format_number(99.97, 3, "up") == "100"
    assert format_number(0.746, 3, "down") == "0.746"   # a value already short stays as it is
    # 1 fs, 1 nm, 1 eV in atomic units come back with the run file's unit names
    assert DEVICE.quantity(1.0 / AU_TIME_FS, "time") == "1 fs"
    assert DEVICE.quantity(1.0 / BOHR_NM, "length") == "1 nm"
    assert DEVICE.quantity(1.0 / HARTREE_EV, "energy") == "1 eV"
    assert DEVICE.quantity(BOHR_NM, "wavenumber") == "1 1/nm"
    assert DEVICE.quantity(AU_TIME_FS / HARTREE_EV, "power") == "1 eV/fs"
    assert DEVICE.quantity(0.5, "probability") == "0.5"
    assert UnitSystem("atomic").quantity(2.0, "time") == "2 atomic_unit_of_time"


# ------------------------------------------------------------------ resolution rules (refusals)

def test_dt_refusal_speaks_fs_and_its_example_dt_is_accepted():
    err = refusal(device(**{"time.dt": 2.0}))
    assert err.key == "time.dt" and "dt = 2 fs" in err.message and " eV" in err.message
    bound = hinted(rf"use dt <= {NUMBER} fs", err.message)
    example = hinted(rf"e\.g\. dt = {NUMBER} fs", err.message)
    assert 0 < example <= bound < 2.0
    model, _ = build_model(config_of(device(**{"time.dt": example})), "exact")
    assert model.config.time.dt == pytest.approx(example / AU_TIME_FS, rel=1e-12)
    # the bound itself passes the rule it came from (it is rounded down, not to nearest)
    res = model.resolution
    check_time_step(res.k_reach, 0.067, res.potential_range, DEVICE.to_atomic(bound, "time"), 1.0)
    with pytest.raises(ConfigError):  # and it is the bound: 1% above is refused
        check_time_step(res.k_reach, 0.067, res.potential_range,
                        DEVICE.to_atomic(bound * 1.01, "time"), 1.0)


def test_points_refusal_speaks_1_per_nm_and_its_count_is_accepted():
    err = refusal(device(**{"grid.points": 64}))
    assert err.key == "grid.points" and "1/nm" in err.message
    n = int(hinted(rf"use at least {NUMBER} points", err.message))
    assert n % 2 == 0  # grid.points must be even
    build_model(config_of(device(**{"grid.points": n})), "exact")
    with pytest.raises(ConfigError):  # the fewest: two fewer is refused
        build_model(config_of(device(**{"grid.points": n - 2})), "exact")
    # just short of the limit, raising numerics.resolution_fraction is the other way out
    err = refusal(device(**{"grid.points": 100}))
    fraction = hinted(rf"set numerics.resolution_fraction = {NUMBER}\)", err.message)
    assert 0.8 < fraction <= 1.0
    build_model(config_of(device(**{"grid.points": 100},
                                 numerics={"resolution_fraction": fraction})), "exact")


def test_memory_refusal_names_an_even_count_that_fits():
    err = refusal(device(numerics={"max_memory_gb": 3e-5}))
    assert err.key == "grid.points" and "GB" in err.message
    n = int(hinted(rf"use at most {NUMBER} points", err.message))
    assert n % 2 == 0 and 10 * 16 * n <= 3e-5 * 1e9 < 10 * 16 * (n + 2)
    memory = hinted(rf"set numerics.max_memory_gb = {NUMBER}\)", err.message)
    build_model(config_of(device(numerics={"max_memory_gb": memory})), "exact")  # accepted
    err = refusal(device(numerics={"max_memory_gb": 1e-7}))  # not even 8 points fit
    assert "no grid of 8 points fits" in err.message
    memory = hinted(rf"set numerics.max_memory_gb = {NUMBER}$", err.message)
    build_model(config_of(device(numerics={"max_memory_gb": memory})), "exact")


# ------------------------------------------------------------------------ build-time warnings

def test_absorber_warning_names_the_width_to_write_and_that_width_is_quiet():
    model, warnings = build_model(config_of(device(**{"grid.absorber_width": 10.0})), "exact")
    text = " ".join(w for w in warnings if w.startswith("grid.absorber_width"))
    assert_device_text(text)
    assert "width 10 nm" in text and " eV" in text and "1/nm" in text
    width = hinted(rf"absorber_width >= {NUMBER} nm", text)
    assert 10.0 < width < 25.0  # (x_max - x_min)/4 = 50 nm: no need to widen the grid
    _, quiet = build_model(config_of(device(**{"grid.absorber_width": width})), "exact")
    assert not any(w.startswith("grid.absorber_width") for w in quiet), quiet


def test_absorber_width_beyond_the_grid_rule_says_how_wide_the_grid_must_be():
    data = device(grid={"x_min": -30.0, "x_max": 30.0, "points": 128, "boundary": "absorbing",
                        "absorber_width": 10.0})  # absorber_width must stay below 15 nm here
    data["initial"]["packet"][0]["center"] = -5.0
    _, warnings = build_model(config_of(data), "exact")
    (text,) = [w for w in warnings if w.startswith("grid.absorber_width")]
    assert_device_text(text)
    width = hinted(rf"absorber_width >= {NUMBER} nm", text)
    length = hinted(rf"x_max - x_min > {NUMBER} nm", text)
    assert width >= 15.0 and length == pytest.approx(4 * width) and "(now 60 nm)" in text
    data["grid"].update(x_min=-length / 2 - 10.0, x_max=length / 2 + 10.0, points=256,
                        absorber_width=width)
    _, quiet = build_model(config_of(data), "exact")
    assert not any(w.startswith("grid.absorber_width") for w in quiet), quiet


def test_slow_packets_that_no_layer_absorbs_are_told_so_in_1_per_nm():
    data = device()
    data["initial"]["packet"][0]["energy"] = 0.05  # |k0| - 3/(2 width) = 0.2965 - 0.3 < 0
    _, warnings = build_model(config_of(data), "exact")
    (text,) = [w for w in warnings if w.startswith("grid.absorber_width")]
    assert_device_text(text)
    assert "no absorber_width up to 160 nm" in text  # 8 times the present 20 nm
    assert hinted(rf"\|k0\| - 3/\(2 width\) is {NUMBER} 1/nm", text) == pytest.approx(
        -0.0035, abs=5e-4)


def test_a_given_absorber_strength_that_is_too_weak_is_told_to_go():
    data = device(**{"grid.absorber_strength": 0.001})
    _, warnings = build_model(config_of(data), "exact")
    text = " ".join(w for w in warnings if w.startswith("grid.absorber_width"))
    assert_device_text(text)
    assert "strength 0.001 eV" in text and "leave grid.absorber_strength out" in text
    _, quiet = build_model(config_of(device(**{"grid.absorber_strength": None})), "exact")
    assert not any(w.startswith("grid.absorber_width") for w in quiet), quiet


def test_grid_phase_warning_names_a_dt_that_silences_it():
    _, warnings = build_model(config_of(device(**{"time.dt": 0.5})), "exact")
    (text,) = [w for w in warnings if w.startswith("time.dt")]
    assert_device_text(text)
    example = hinted(rf"e\.g\. dt = {NUMBER} fs", text)
    _, quiet = build_model(config_of(device(**{"time.dt": example})), "exact")
    assert not any(w.startswith("time.dt") for w in quiet), quiet


def test_packet_tail_warning_speaks_nm():
    data = device(grid={"x_min": -100.0, "x_max": 100.0, "points": 256})  # periodic
    data["initial"]["packet"][0]["center"] = -84.0  # 3.2 widths from the edge: the tail wraps
    _, warnings = build_model(config_of(data), "exact")
    (text,) = [w for w in warnings if w.startswith("initial.packet[0]")]
    assert_device_text(text)
    assert "at -84 nm (width 5 nm)" in text and "[-100, 100] nm" in text


# ----------------------------------------------------------------------- run-file refusals

@pytest.mark.parametrize("changes, key, unit", [
    ({"grid.absorber_width": 60.0}, "grid.absorber_width", "50 nm"),
    ({"time.window": 10.1}, "time.window", " fs"),
    ({"time.t_end": 100.1}, "time.dt", " fs"),
    ({"grid.absorber_strength": 1e6}, "grid.absorber_strength", " eV"),
])
def test_run_file_refusals_carry_the_run_files_units(changes, key, unit):
    with pytest.raises(ConfigError) as e:
        config_of(device(**changes))
    assert e.value.key == key and unit in e.value.message
    assert_device_text(str(e.value))


def test_nearest_valid_dt_and_window_are_accepted():
    with pytest.raises(ConfigError) as e:
        config_of(device(**{"time.t_end": 100.1}))
    dt = hinted(rf"nearest valid dt = {NUMBER} fs", e.value.message)
    config_of(device(**{"time.t_end": 100.1, "time.dt": dt}))  # window/dt whole too (10 fs)
    with pytest.raises(ConfigError) as e:
        config_of(device(**{"time.window": 10.1}))
    window = hinted(rf"nearest valid window = {NUMBER} fs", e.value.message)
    config_of(device(**{"time.window": window}))


def test_drive_time_scale_refusals_give_the_value_to_write():
    pulse = {"kind": "uniform", "force": 0.001, "time_profile": "gaussian_pulse", "t0": 50.0,
             "duration": 0.1}
    with pytest.raises(ConfigError) as e:
        config_of(device(field=[pulse]))
    assert_device_text(str(e.value))
    duration = hinted(rf"use duration >= {NUMBER} fs", e.value.message)
    config_of(device(field=[{**pulse, "duration": duration}]))
    sine = {"kind": "uniform", "force": 0.001, "time_profile": "sine", "frequency": 3.0}
    with pytest.raises(ConfigError) as e:
        config_of(device(field=[sine]))
    assert_device_text(str(e.value))
    assert "1/fs" in e.value.message
    frequency = hinted(rf"use frequency <= {NUMBER} 1/fs", e.value.message)
    config_of(device(field=[{**sine, "frequency": frequency}]))


def test_atomic_run_files_keep_atomic_messages():
    data = device(**{"time.dt": 2.0})
    data["units"] = {"system": "atomic"}
    data["particles"]["mass"] = 1.0
    data["initial"]["packet"][0] = {"center": -40.0, "width": 5.0, "wavenumber": 0.5}
    data["time"] = {"dt": 4.0, "t_end": 100.0, "save_every": 5}
    with pytest.raises(ConfigError) as e:
        build_model(config_of(data), "exact")
    assert "atomic_unit_of_time" in e.value.message and "hartree" in e.value.message
    assert " fs" not in e.value.message and " eV" not in e.value.message


# ------------------------------------------------------------------------- bohmpower check

def test_check_prints_device_units_only(tmp_path, capsys, caplog):
    data = device(**{"grid.absorber_width": 10.0, "time.dt": 0.5})
    path = write_run_file(tmp_path / "run.toml", data)
    assert cli.main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert_device_text(out + caplog.text)
    assert "absorbing layers: width 10 nm, strength" in out and "1/nm" in out
    assert "warning: grid.absorber_width" in out and "warning: time.dt" in out
    assert "dt = 0.5 fs" in out


def test_check_method_warning_in_device_units(tmp_path, capsys):
    data = device(particles={"count": 2, "mass": 0.067, "statistics": "fermion"},
                  interaction={"kind": "soft_coulomb", "softening": 2.0,
                               "relative_permittivity": 12.9},
                  trajectories={"count": 4}, method={"exchange": True})
    data["initial"]["packet"].append({"center": -60.0, "width": 5.0, "energy": 0.3})
    config = config_of(data)
    (text,) = config.method_warnings()
    assert_device_text(text)
    # the measurements quoted: +0.08 and +1.9 hartree created, below 0.011 hartree without exchange
    assert f"+{0.08 * HARTREE_EV:.2g} eV" in text and f"+{1.9 * HARTREE_EV:.2g} eV" in text
    assert f"below {0.011 * HARTREE_EV:.2g} eV" in text


# ------------------------------------------------------------------------ run-time messages

def test_exact_run_log_lines_speak_fs_and_ev(tmp_path, caplog):
    # A packet near the right layer, with a layer far too weak to absorb it: it reaches the grid's
    # outer edge, which the run reports with its time.
    data = device(**{"grid.absorber_strength": 1e-4, "time.t_end": 60.0, "time.window": None})
    data["initial"]["packet"][0]["center"] = 40.0
    path = write_run_file(tmp_path / "run.toml", data)
    caplog.set_level(logging.DEBUG)  # -v: the debug lines too
    assert cli.main(["exact", str(path), "-o", str(tmp_path / "out.h5"), "-v"]) == 0
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("bohmpower"))
    assert_device_text(ours)
    t_edge = hinted(rf"t = {NUMBER} fs: density at the outer edge", ours)
    assert 0 < t_edge <= 60.0
    assert re.search(rf"internal energy {NUMBER} eV -> {NUMBER} eV", ours)
    assert "dt = 0.2 fs" in ours and "absorbing layers: width 20 nm" in ours


def test_numerical_failure_time_is_in_fs():
    model, _ = build_model(config_of(device()), "exact")
    monitor = HealthMonitor(model, model.config.time.dt)
    psi = np.full(model.grid.n_x, np.nan, dtype=complex)

    class Frame:
        globals = {"norm": float("nan"), "energy": 0.0}

    with pytest.raises(NumericalError) as e:
        monitor.check(7, 7 * model.config.time.dt, psi, Frame())
    assert_device_text(str(e.value))
    assert "numerical failure at step 7 (t = 1.4 fs)" in str(e.value)
    # an engine that raises in atomic units is relabelled by the run loop (in_units)
    err = NumericalError(3, 10.0 / AU_TIME_FS, "cause").in_units(DEVICE)
    assert str(err) == "numerical failure at step 3 (t = 10 fs): cause"


def test_cw_run_failure_time_is_in_fs(monkeypatch):
    from bohmpower.cw import engine

    data = device(trajectories={"count": 4, "seed": 1}, method={"exchange": False},
                  time={"dt": 0.2, "t_end": 2.0, "save_every": 5})
    real_step = engine.CWEnsemble.step

    def step(self):
        if self.step_index + 1 == 4:
            raise engine.SampleFailure(int(self.sample_ids[0]), 0, 4, "NaN in the CW")
        return real_step(self)

    monkeypatch.setattr(engine.CWEnsemble, "step", step)
    with pytest.raises(NumericalError) as e:
        CWSolver(config_of(data)).run()
    assert_device_text(str(e.value))
    assert "(t = 0.8 fs)" in str(e.value)

    def failing_blocks(self, blocks, comm=None, stop_now=None, **kw):  # an engine error without a
        # unit system (as the ICWF's)
        raise NumericalError(5, 1.0 / AU_TIME_FS, "interacting scheme: S singular")

    monkeypatch.setattr(CWSolver, "run_blocks", failing_blocks)
    with pytest.raises(NumericalError) as e:
        CWSolver(config_of(data)).run()
    assert "(t = 1 fs)" in str(e.value)


# --------------------------------------------------------------------- results in run units

def test_exact_result_to_units_matches_the_result_file(tmp_path):
    from bohmpower import io

    config = config_of(device(**{"time.t_end": 20.0, "time.window": 4.0}))
    result = ExactSolver(config).run()
    dev = result.to_units()  # the run file's system
    assert dev.system == "device" and dev.time.unit == "fs"
    np.testing.assert_allclose(dev.time.values, np.arange(0.0, 20.1, 4.0), rtol=1e-12)
    energy = dev.volumes["left"]["energy"]
    assert energy.unit == "eV"
    np.testing.assert_allclose(energy.values, result.volumes["left"]["energy"] * HARTREE_EV,
                               rtol=1e-12)
    assert dev.volumes["left"]["power"].unit == "eV/fs"
    assert dev.fields["density"].unit == "1/nm" and dev.windows["left"]["t_start"].unit == "fs"
    # the same numbers the result file holds
    path = io.write_exact_result(tmp_path / "r.h5", result, config)
    with h5py.File(path, "r") as f:
        for group, name in (("volumes/left", "power"), ("volumes/left/window", "quantum_flux"),
                            ("fields", "power_density"), ("global", "energy")):
            ours = {"volumes/left": dev.volumes["left"],
                    "volumes/left/window": dev.windows["left"],
                    "fields": dev.fields, "global": dev.globals}[group][name]
            assert ours.unit == f[f"{group}/{name}"].attrs["units"]
            np.testing.assert_allclose(ours.values, f[f"{group}/{name}"][()], rtol=1e-12)
    atomic = result.to_units("atomic")
    np.testing.assert_array_equal(atomic.volumes["left"]["energy"].values,
                                  result.volumes["left"]["energy"])
    with pytest.raises(ConfigError):
        result.to_units("si")


def test_cw_result_to_units_matches_the_result_file(tmp_path):
    from bohmpower import io

    config = config_of(device(trajectories={"count": 6, "seed": 2, "store": 2},
                              method={"exchange": False},
                              time={"dt": 0.2, "t_end": 4.0, "save_every": 5}))
    result = CWSolver(config).run()
    dev = result.to_units("device")
    vol = dev.estimates["volumes"]["left"]
    assert vol["energy"].unit == "eV" and vol["energy_stderr"].unit == "eV"
    assert vol["field_work"].unit == "eV/fs"
    assert dev.stored_trajectories["positions"].unit == "nm"
    assert dev.stored_trajectories["velocities"].unit == "nm/fs"
    assert math.isclose(dev.estimates["profile_bandwidth"].values,
                        result.estimates["profile_bandwidth"] * BOHR_NM, rel_tol=1e-12)
    path = io.write_cw_result(tmp_path / "r.h5", result, config)
    with h5py.File(path, "r") as f:
        np.testing.assert_allclose(vol["energy"].values, f["volumes/left/energy"][()], rtol=1e-12)
        np.testing.assert_allclose(dev.stored_trajectories["positions"].values,
                                   f["trajectories/positions"][()], rtol=1e-12)


# ----------------------------------------------------------------- the docs quote the code

def test_run_file_page_quotes_the_messages_this_code_writes():
    import tomllib

    text = (REPO / "docs" / "run-file.md").read_text(encoding="utf-8")
    section = text.split("### Messages, hints and results in the run file's units", 1)[1]
    section = section.split("\n## ", 1)[0]
    (block,) = re.findall(r"```toml\n(.*?)```", section, re.DOTALL)
    rest = section.replace(f"```toml\n{block}```", "")
    quoted = [" ".join(b.split()) for b in re.findall(r"```\n(.*?)```", rest, re.DOTALL)]
    data = tomllib.loads(block)
    assert build_model(parse_config(data, REPO), "exact")[1] == []  # "without a warning"
    data["time"]["dt"] = 2.0
    with pytest.raises(ConfigError) as e:
        build_model(parse_config(data, REPO), "exact")
    assert " ".join(str(e.value).split()) == quoted[0]
    data["time"]["dt"], data["grid"]["points"] = 0.2, 64
    with pytest.raises(ConfigError) as e:
        build_model(parse_config(data, REPO), "exact")
    assert "use at least 106 points" in str(e.value) and "`use at least 106 points`" in section
    data["grid"]["points"], data["grid"]["absorber_width"] = 256, 10.0
    assert build_model(parse_config(data, REPO), "exact")[1] == [quoted[1]]
    data["grid"]["absorber_width"] = 17.2
    assert build_model(parse_config(data, REPO), "exact")[1] == []  # "is quiet"
