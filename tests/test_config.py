"""The run file: defaults, every refusal rule (each names its key), unit conversion, round trips."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import tomllib
from pathlib import Path

import pint
import pytest

from bohmpower.config import (
    KEYS,
    SECTIONS,
    EnergyConfig,
    FieldPiece,
    GridConfig,
    InitialConfig,
    InteractionConfig,
    MethodConfig,
    NumericsConfig,
    Packet,
    Particles,
    PotentialPiece,
    ReservoirsConfig,
    RunConfig,
    SteadyStateConfig,
    TimeConfig,
    Train,
    TrajectoriesConfig,
    Units,
    VolumeConfig,
    describe,
    load_config,
    parse_config,
)
from bohmpower.errors import ConfigError
from tests.conftest import make_config, run_dict, write_run_file

DATA = Path(__file__).resolve().parent / "data"
DATA_FILES = sorted(DATA.glob("*.toml"))
UREG = pint.UnitRegistry()

ABSORBING = {
    "x_min": -40.0,
    "x_max": 40.0,
    "points": 128,
    "boundary": "absorbing",
    "absorber_width": 5.0,
}


def refuse(data: dict, base_dir: Path | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir or DATA)
    return info.value


def with_(section: str, **changes) -> dict:
    """run_dict() with keys of one table changed (a value of ... deletes the key)."""
    d = run_dict()
    table = d.setdefault(section, {})
    for k, v in changes.items():
        if v is ...:
            table.pop(k, None)
        else:
            table[k] = v
    return d


# ---- the sample run files ------------------------------------------------------------------------


def test_data_files_exist():
    names = {p.name for p in DATA_FILES}
    assert {"spec_example.toml", "exact_one_electron.toml", "device_double_barrier.toml"} <= names


@pytest.mark.parametrize("path", DATA_FILES, ids=lambda p: p.name)
def test_data_files_load_and_round_trip(path):
    c = load_config(path)
    assert c.base_dir == path.parent
    assert parse_config(tomllib.loads(c.to_toml()), c.base_dir) == c
    a = c.to_atomic()
    assert parse_config(tomllib.loads(a.to_toml()), a.base_dir) == a
    assert c.config_hash() == hashlib.sha256(c.to_toml().encode()).hexdigest()
    assert len(describe(c).splitlines()) > 8


def test_spec_example_resolves_as_documented():
    c = load_config(DATA / "spec_example.toml")
    assert (c.particles.count, c.grid.points, c.grid.boundary) == (2, 1024, "absorbing")
    assert c.time.n_steps == 1200 and c.time.window == 1.0
    assert c.time.frame_steps[:3] == (0, 20, 40) and c.time.frame_steps[-1] == 1200
    assert c.time.n_frames == 61
    assert c.field[0].smoothing == 1.0 and c.field[0].time_profile == "constant"
    assert c.interaction == InteractionConfig("soft_coulomb", 1.0, 1.0, None)
    assert [p.wavenumber for p in c.initial.packet] == [0.8, 0.9]
    assert c.trajectories == TrajectoriesConfig(2000, 12345, 50)
    # basis_size left out: resolved from N (512 for two electrons), though only the interacting
    # scheme reads it
    assert c.method == MethodConfig(True, basis_size=512)
    c.check_command("run")  # it is a `run` file
    c.check_command("exact")  # ...and serves the exact solver too, which ignores [method]
    assert c.command_notes("exact") == [
        "[method] is read by `bohmpower run` only; the exact solver ignores it"]
    assert c.command_notes("run") == []


def test_device_file_is_an_exact_run():
    for name in ("device_double_barrier.toml", "exact_one_electron.toml"):
        config = load_config(DATA / name)
        config.check_command("exact")  # raises ConfigError if refused
        assert config.method is None


# ---- defaults ------------------------------------------------------------------------------------


def test_defaults_of_a_minimal_run():
    d = run_dict()
    del d["title"], d["units"], d["schema"]
    d["particles"] = {"count": 1}
    d["grid"] = {"x_min": -40, "x_max": 40, "points": 128}
    d["time"] = {"dt": 0.05, "t_end": 1.0}
    c = parse_config(d, DATA)
    assert c.schema == "bohmpower-run/1" and c.title == ""
    assert c.units == Units("atomic")
    assert c.particles == Particles(1, 1.0, "fermion")
    assert c.grid == GridConfig(-40.0, 40.0, 128, "periodic", None, None)
    assert isinstance(c.grid.x_min, float)  # ints are accepted for floats and stored as floats
    assert c.time == TimeConfig(0.05, 1.0, 10, None)
    assert c.time.window_length == pytest.approx(0.5)
    assert c.potential == () and c.field == ()
    assert c.interaction == InteractionConfig("none", None, None, None)
    assert c.trajectories is None and c.method is None
    assert c.energy == EnergyConfig(False)
    assert c.numerics == NumericsConfig(0.8, 1.0, math.pi, 2, 1, None, 1e-13)
    # The dataclass defaults are the registry's (built directly in Python, the same tree results).
    assert NumericsConfig() == c.numerics and InteractionConfig() == c.interaction


def test_piece_defaults():
    c = make_config(
        grid=ABSORBING,
        potential=[
            {"kind": "barrier", "center": 1.0, "width": 2.0, "height": 0.5},
            {"kind": "harmonic", "omega": 0.1},
            {"kind": "soft_coulomb_well"},
            {"kind": "well", "center": 0, "width": 1, "depth": 1},
        ],
        field=[
            {"kind": "linear_drop", "bias": 0.1, "x_left": -10.0, "x_right": 30.0},
            {"kind": "uniform", "force": 0.01, "time_profile": "sine", "frequency": 0.1},
        ],
        interaction={"kind": "soft_coulomb"},
        trajectories={"count": 3},
    )
    barrier, harmonic, scw, well = c.potential
    assert barrier.smoothing == 0.0 and well.smoothing == 0.0
    assert harmonic.center == 0.0
    assert (scw.center, scw.charge, scw.softening) == (0.0, 1.0, 1.0)
    drop, uniform = c.field
    assert drop.smoothing == pytest.approx(40.0 / 20)  # (x_right - x_left)/20
    assert drop.time_profile == "constant"
    assert uniform.origin == 0.0 and uniform.phase == 0.0
    assert (c.interaction.softening, c.interaction.relative_permittivity) == (1.0, 1.0)
    assert c.trajectories == TrajectoriesConfig(3, 12345, 3)  # store = min(count, 10)
    assert make_config(trajectories={"count": 50}).trajectories.store == 10


# ---- time ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "t_end, dt, save_every",
    [(1.0, 0.05, 5), (1.0, 0.05, 3), (0.3, 0.1, 1), (1.0, 0.05, 100), (7.0, 1.0, 7)],
)
def test_frame_steps(t_end, dt, save_every):
    t = make_config(time={"dt": dt, "t_end": t_end, "save_every": save_every}).time
    n = round(t_end / dt)
    assert t.n_steps == n
    expected = list(range(0, n + 1, save_every))
    if expected[-1] != n:
        expected.append(n)
    assert list(t.frame_steps) == expected
    assert t.n_frames == len(t.frame_steps)


def test_t_end_over_dt_tolerance():
    # 0.3/0.1 = 2.9999999999999996 in floating point: a whole number to 1e-9.
    assert make_config(time={"dt": 0.1, "t_end": 0.3}).time.n_steps == 3
    e = refuse(with_("time", dt=0.03, t_end=1.0))
    assert e.key == "time.dt"
    assert "nearest valid dt = 0.03030303" in e.message  # 1.0/33
    assert refuse(with_("time", dt=2.0, t_end=1.0)).key == "time.dt"
    assert refuse(with_("time", dt=1e-12, t_end=1.0)).key == "time.dt"  # 1e12 steps


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"dt": 0.0}, "time.dt"),
        ({"dt": -0.1}, "time.dt"),
        ({"t_end": -1.0}, "time.t_end"),
        ({"dt": ...}, "time.dt"),
        ({"save_every": 0}, "time.save_every"),
        ({"save_every": 2.0}, "time.save_every"),
        ({"window": 0.0}, "time.window"),
        ({"window": 2.0}, "time.window"),  # > t_end
        ({"window": 0.12}, "time.window"),  # not a whole number of dt
        ({"windows": 0.1}, "time.windows"),
    ],
)
def test_time_refusals(changes, key):
    assert refuse(with_("time", **changes)).key == key


def test_window_accepted():
    assert make_config(time={"dt": 0.05, "t_end": 1.0, "window": 0.25}).time.window_length == 0.25


# ---- types ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["1.0", True, False, float("nan"), float("inf"), -float("inf"), [1.0], {"a": 1.0}, 10**400],
)
def test_float_keys_refuse_non_numbers(value):
    e = refuse(with_("particles", mass=value))
    assert e.key == "particles.mass"


@pytest.mark.parametrize("value", [2.0, True, "2", [2], 2.5])
def test_int_keys_refuse_non_integers(value):
    assert refuse(with_("grid", points=value)).key == "grid.points"


@pytest.mark.parametrize("value", [1, "true", 0.0])
def test_bool_keys_refuse_non_booleans(value):
    d = run_dict(energy={"include_drive_potential": value})
    assert refuse(d).key == "energy.include_drive_potential"


def test_int_accepted_for_float():
    c = make_config(grid={"x_min": -40, "x_max": 40, "points": 128})
    assert type(c.grid.x_max) is float


# ---- top level, sections ----------------------------------------------------------------------------


def test_unknown_section_and_key():
    assert refuse(run_dict(gird={"points": 8})).key == "gird"
    d = run_dict()
    d["titel"] = "x"
    assert refuse(d).key == "titel"
    assert refuse(with_("grid", heigth=1.0)).key == "grid.heigth"


def test_unknown_key_message_lists_allowed_keys_of_the_kind():
    d = run_dict(
        potential=[
            {"kind": "well", "center": 0.0, "width": 1.0, "depth": 1.0},
            {"kind": "barrier", "center": 0.0, "width": 1.0, "heigth": 1.0},
        ]
    )
    e = refuse(d)
    assert str(e) == (
        "potential[1].heigth: unknown key; did you mean 'potential[1].height'? "
        "allowed keys for kind 'barrier': "
        "center, height, smoothing, width"
    )


def test_a_mistyped_section_name_gets_a_did_you_mean():
    d = run_dict(trajectories={"count": 4})
    d["trajectorys"] = d.pop("trajectories")
    e = refuse(d)
    assert e.key == "trajectorys"
    assert str(e).startswith("trajectorys: unknown section; did you mean 'trajectories'? "
                             "allowed sections: units, ")
    d = run_dict()
    d["zzz"] = {"a": 1}  # nothing close: no guess
    assert "did you mean" not in str(refuse(d))


@pytest.mark.parametrize("schema", ["bohmpower-run/2", "", 1])
def test_schema(schema):
    assert refuse(run_dict(schema=schema)).key == "schema"


@pytest.mark.parametrize("section", ["particles", "grid", "time"])
def test_required_sections(section):
    assert refuse(run_dict(**{section: None})).key == section


def test_sections_of_the_wrong_shape():
    assert refuse(run_dict(grid=[{"x_min": 0}])).key == "grid"
    assert refuse(run_dict(potential={"kind": "harmonic", "omega": 1.0})).key == "potential"
    assert refuse(run_dict(volume=["device"])).key == "volume[0]"
    init = {"packet": {"center": 0.0, "width": 2.0, "wavenumber": 0.5}}
    assert refuse(run_dict(initial=init)).key == "initial.packet"
    init = {
        "train": [
            {"count": 1, "first_center": 0.0, "spacing": 1.0, "width": 1.0, "wavenumber": 0.0}
        ]
    }
    assert refuse(run_dict(initial=init)).key == "initial.train"
    with pytest.raises(ConfigError):
        parse_config([1, 2], DATA)


@pytest.mark.parametrize(
    "section, changes, key",
    [
        ("units", {"system": "SI"}, "units.system"),
        ("particles", {"count": 0}, "particles.count"),
        ("particles", {"count": ...}, "particles.count"),
        ("particles", {"mass": 0.0}, "particles.mass"),
        ("particles", {"mass": -0.067}, "particles.mass"),
        ("particles", {"statistics": "boson"}, "particles.statistics"),
        ("grid", {"x_max": -40.0}, "grid.x_max"),
        ("grid", {"x_min": 50.0}, "grid.x_max"),
        ("grid", {"points": 127}, "grid.points"),
        ("grid", {"points": 6}, "grid.points"),
        ("grid", {"boundary": "reflecting"}, "grid.boundary"),
        ("grid", {"boundary": "absorbing"}, "grid.absorber_width"),
        ("grid", {"absorber_width": 5.0}, "grid.absorber_width"),  # periodic grid
        ("grid", {"absorber_strength": 1.0}, "grid.absorber_strength"),  # periodic grid
        ("grid", {"boundary": "absorbing", "absorber_width": 20.0}, "grid.absorber_width"),  # = L/4
        ("grid", {"boundary": "absorbing", "absorber_width": 0.0}, "grid.absorber_width"),
        (
            "grid",
            {"boundary": "absorbing", "absorber_width": 5.0, "absorber_strength": 0.0},
            "grid.absorber_strength",
        ),
        ("numerics", {"order": 3}, "numerics.order"),
        ("numerics", {"resolution_fraction": 1.5}, "numerics.resolution_fraction"),
        ("numerics", {"resolution_fraction": 0}, "numerics.resolution_fraction"),
        ("numerics", {"max_phase": 0.0}, "numerics.max_phase"),
        ("numerics", {"warn_phase": -1.0}, "numerics.warn_phase"),
        ("numerics", {"fft_workers": 0}, "numerics.fft_workers"),
        ("numerics", {"max_memory_gb": 0.0}, "numerics.max_memory_gb"),
        ("numerics", {"density_cutoff": 1.0}, "numerics.density_cutoff"),
        ("numerics", {"density_cutoff": -1e-13}, "numerics.density_cutoff"),
        ("trajectories", {"count": 0}, "trajectories.count"),
        ("trajectories", {"count": 5, "store": 6}, "trajectories.store"),
        ("trajectories", {"count": 5, "seed": -1}, "trajectories.seed"),
        ("trajectories", {"store": 2}, "trajectories.count"),
        ("method", {"exchange": "yes"}, "method.exchange"),
        ("method", {"exchanges": True}, "method.exchanges"),
    ],
)
def test_scalar_refusals(section, changes, key):
    assert refuse(with_(section, **changes)).key == key


# ---- potential ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "piece, key",
    [
        ({"center": 0.0}, "potential[0].kind"),
        ({"kind": "step"}, "potential[0].kind"),
        ({"kind": 1}, "potential[0].kind"),
        ({"kind": "barrier", "center": 0.0, "width": 0.0, "height": 1.0}, "potential[0].width"),
        ({"kind": "barrier", "center": 0.0, "width": 1.0}, "potential[0].height"),
        ({"kind": "barrier", "width": 1.0, "height": 1.0}, "potential[0].center"),
        (
            {"kind": "barrier", "center": 0.0, "width": 1.0, "height": 1.0, "smoothing": -0.1},
            "potential[0].smoothing",
        ),
        (
            {"kind": "barrier", "center": 0.0, "width": 1.0, "height": 1.0, "depth": 1.0},
            "potential[0].depth",
        ),
        ({"kind": "well", "center": 0.0, "width": 1.0, "height": 1.0}, "potential[0].height"),
        (
            {"kind": "double_barrier", "center": 0.0, "width": 1.0, "height": 1.0, "gap": 0.0},
            "potential[0].gap",
        ),
        (
            {"kind": "double_barrier", "center": 0.0, "width": 1.0, "height": 1.0},
            "potential[0].gap",
        ),
        ({"kind": "harmonic", "omega": 0.0}, "potential[0].omega"),
        ({"kind": "harmonic"}, "potential[0].omega"),
        ({"kind": "gaussian", "center": 0.0, "width": -1.0, "height": 1.0}, "potential[0].width"),
        ({"kind": "soft_coulomb_well", "softening": 0.0}, "potential[0].softening"),
        ({"kind": "soft_coulomb_well", "charge": "two"}, "potential[0].charge"),
        ({"kind": "table", "file": "no_such_table.dat"}, "potential[0].file"),
        ({"kind": "table"}, "potential[0].file"),
        ({"kind": "table", "file": ""}, "potential[0].file"),
    ],
)
def test_potential_refusals(piece, key):
    assert refuse(run_dict(potential=[piece])).key == key


def test_table_piece(tmp_path):
    (tmp_path / "u.dat").write_text("# x U\n-40 0.0\n0 0.5\n40 0.0\n")
    c = make_config(
        tmp_path, units={"system": "device"}, potential=[{"kind": "table", "file": "u.dat"}]
    )
    piece = c.potential[0]
    assert piece.file == tmp_path / "u.dat"
    assert piece.table_units == "device"
    assert 'file = "u.dat"' in c.to_toml()  # written relative to the run file's folder
    assert parse_config(tomllib.loads(c.to_toml()), tmp_path) == c
    a = c.to_atomic()
    assert a.units.system == "atomic" and a.potential[0].table_units == "device"
    assert parse_config(tomllib.loads(a.to_toml()), tmp_path) == a
    explicit = make_config(
        tmp_path, potential=[{"kind": "table", "file": "u.dat", "table_units": "device"}]
    )
    assert explicit.units.system == "atomic" and explicit.potential[0].table_units == "device"


@pytest.mark.parametrize("text", ["1 2 3\n4 5 6\n", "0 1\n", "0 1\n0 2\n", "0 nan\n1 2\n", "a b\n"])
def test_table_file_content_refused(tmp_path, text):
    (tmp_path / "u.dat").write_text(text)
    e = refuse(run_dict(potential=[{"kind": "table", "file": "u.dat"}]), tmp_path)
    assert e.key == "potential[0].file"


# ---- field --------------------------------------------------------------------------------------

DROP = {"kind": "linear_drop", "bias": 0.1, "x_left": -10.0, "x_right": 10.0}


@pytest.mark.parametrize(
    "piece, key",
    [
        ({"bias": 0.1}, "field[0].kind"),
        ({**DROP, "x_right": -10.0}, "field[0].x_right"),
        ({**DROP, "x_left": -50.0}, "field[0].x_left"),
        ({**DROP, "x_right": 50.0}, "field[0].x_right"),
        ({**DROP, "smoothing": 0.0}, "field[0].smoothing"),
        ({**DROP, "bias": ...}, "field[0].bias"),
        ({**DROP, "force": 1.0}, "field[0].force"),
        ({**DROP, "time_profile": "square"}, "field[0].time_profile"),
        ({**DROP, "time_profile": "turn_on"}, "field[0].t_on"),
        ({**DROP, "time_profile": "turn_on", "t_on": 0.0}, "field[0].t_on"),
        ({**DROP, "time_profile": "sine"}, "field[0].frequency"),
        ({**DROP, "time_profile": "sine", "frequency": -0.1}, "field[0].frequency"),
        ({**DROP, "time_profile": "gaussian_pulse", "t0": 1.0}, "field[0].duration"),
        (
            {**DROP, "time_profile": "gaussian_pulse", "t0": 1.0, "duration": 0.0},
            "field[0].duration",
        ),
        ({**DROP, "time_profile": "sine", "frequency": 0.1, "t_on": 1.0}, "field[0].t_on"),
        ({**DROP, "phase": 0.5}, "field[0].phase"),
        ({"kind": "uniform", "force": 0.01}, "field[0].kind"),  # periodic grid
    ],
)
def test_field_refusals(piece, key):
    piece = {k: v for k, v in piece.items() if v is not ...}
    assert refuse(run_dict(field=[piece])).key == key


def test_profile_parameter_of_another_profile_says_which():
    e = refuse(run_dict(field=[{**DROP, "time_profile": "sine", "frequency": 0.1, "t_on": 1.0}]))
    assert "only with time_profile = 'turn_on'" in e.message


def test_uniform_field_on_absorbing_grid():
    c = make_config(
        grid=ABSORBING,
        field=[
            {"kind": "uniform", "force": -0.01, "origin": 2, "time_profile": "turn_on", "t_on": 0.5}
        ],
    )
    assert c.field[0] == FieldPiece(
        "uniform", force=-0.01, origin=2.0, time_profile="turn_on", t_on=0.5
    )
    assert (
        refuse(
            run_dict(grid=ABSORBING, field=[{"kind": "uniform", "force": 0.1, "smoothing": 1.0}])
        ).key
        == "field[0].smoothing"
    )


# ---- interaction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "section, key",
    [
        ({"kind": "soft_coulomb", "softening": 0.0}, "interaction.softening"),
        (
            {"kind": "soft_coulomb", "relative_permittivity": 0.0},
            "interaction.relative_permittivity",
        ),
        ({"kind": "harmonic"}, "interaction.strength"),
        (
            {"kind": "harmonic", "strength": 1.0, "relative_permittivity": 2.0},
            "interaction.relative_permittivity",
        ),
        ({"kind": "none", "softening": 1.0}, "interaction.softening"),
        ({"kind": "yukawa"}, "interaction.kind"),
        ({"softening": 1.0}, "interaction.softening"),  # kind defaults to "none"
    ],
)
def test_interaction_refusals(section, key):
    assert refuse(run_dict(interaction=section)).key == key


def test_interaction_kinds():
    assert make_config(
        interaction={"kind": "harmonic", "strength": 1}
    ).interaction == InteractionConfig("harmonic", None, None, 1.0)
    assert make_config(interaction={}).interaction == InteractionConfig("none")


# ---- initial state ------------------------------------------------------------------------------


def packets(*items):
    return {"packet": [dict(p) for p in items]}


P0 = {"center": 0.0, "width": 2.0, "wavenumber": 0.5}


@pytest.mark.parametrize(
    "initial, key",
    [
        (packets({**P0, "width": 0.0}), "initial.packet[0].width"),
        (packets({"center": 0.0, "width": 2.0}), "initial.packet[0].wavenumber"),
        (packets({**P0, "energy": 0.1}), "initial.packet[0].energy"),
        (packets({"center": 0.0, "width": 2.0, "energy": -0.1}), "initial.packet[0].energy"),
        (packets({**P0, "center": 35.0}), "initial.packet[0].center"),  # 35 + 3*2 > 40
        (packets({**P0, "center": -34.5}), "initial.packet[0].center"),
        (packets(P0, {**P0, "center": 35.0}), "initial.packet[1].center"),
        (packets(P0, P0), "initial"),  # 2 orbitals for 1 electron
        ({}, "initial"),
        ({"many_body_state": 0, **packets(P0)}, "initial.many_body_state"),
        ({"many_body_state": -1}, "initial.many_body_state"),
        ({"eigenstate": [{"index": -1}]}, "initial.eigenstate[0].index"),
        ({"eigenstate": [{"index": 0, "energy": 1.0}]}, "initial.eigenstate[0].energy"),
        (
            {
                "train": {
                    "count": 0,
                    "first_center": 0.0,
                    "spacing": 5.0,
                    "width": 1.0,
                    "wavenumber": 0.0,
                }
            },
            "initial.train.count",
        ),
        ({"packets": []}, "initial.packets"),
    ],
)
def test_initial_refusals(initial, key):
    assert refuse(run_dict(initial=initial)).key == key


def test_packet_must_clear_the_absorbing_layer():
    # Inside the grid (|center| + 3 width = 39 < 40) but inside the 5-wide layer.
    d = run_dict(grid=ABSORBING, initial=packets({**P0, "center": 33.0}))
    assert refuse(d).key == "initial.packet[0].center"
    assert make_config(grid=ABSORBING, initial=packets({**P0, "center": 29.0})).initial.packet


def test_train_members():
    train = {"count": 3, "first_center": -20.0, "spacing": 10.0, "width": 1.5, "energy": 0.125}
    c = make_config(particles={"count": 4}, initial={"train": train, **packets(P0)})
    t = c.initial.train
    assert t == Train(3, -20.0, 10.0, 1.5, 0.5)  # energy 1/8 hartree, m = 1: k = sqrt(2 m E) = 0.5
    assert t.centers == (-20.0, -10.0, 0.0)
    assert t.packets()[2] == Packet(0.0, 1.5, 0.5)
    assert c.initial.n_orbitals == 4
    d = run_dict(
        particles={"count": 4}, initial={"train": {**train, "spacing": 30.0}, **packets(P0)}
    )
    assert refuse(d).key == "initial.train.spacing"
    d = run_dict(particles={"count": 3}, initial={"train": {**train, "first_center": -39.0}})
    assert refuse(d).key == "initial.train.first_center"
    d = run_dict(particles={"count": 3}, initial={"train": {**train, "wavenumber": 1.0}})
    assert refuse(d).key == "initial.train.energy"


def test_eigenstates_and_many_body_state():
    c = make_config(
        particles={"count": 2},
        potential=[{"kind": "harmonic", "omega": 0.2}],
        initial={"eigenstate": [{"index": 0}, {"index": 1}]},
    )
    assert [e.index for e in c.initial.eigenstate] == [0, 1]
    c = make_config(
        particles={"count": 2},
        potential=[{"kind": "harmonic", "omega": 0.2}],
        initial={"many_body_state": 1},
    )
    assert c.initial == InitialConfig((), None, (), 1)
    c.check_command("exact")
    with pytest.raises(ConfigError) as e:
        c.check_command("run")
    assert e.value.key == "initial.many_body_state"


def test_energy_resolves_to_wavenumber():
    c = make_config(
        particles={"count": 1, "mass": 2.0},
        initial=packets({"center": 0.0, "width": 2.0, "energy": 0.25}),
    )
    assert c.initial.packet[0].wavenumber == pytest.approx(1.0, rel=1e-15)  # sqrt(2*2*0.25)
    zero = make_config(initial=packets({"center": 0.0, "width": 2.0, "energy": 0}))
    assert zero.initial.packet[0].wavenumber == 0.0


# ---- volumes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "volumes, key",
    [
        ([{"name": "a b", "x_min": 0.0, "x_max": 1.0}], "volume[0].name"),
        ([{"name": "", "x_min": 0.0, "x_max": 1.0}], "volume[0].name"),
        (
            [{"name": "a", "x_min": 0.0, "x_max": 1.0}, {"name": "a", "x_min": 1.0, "x_max": 2.0}],
            "volume[1].name",
        ),
        ([{"name": "a", "x_min": 1.0, "x_max": 1.0}], "volume[0].x_max"),
        ([{"name": "a", "x_min": -41.0, "x_max": 1.0}], "volume[0].x_min"),
        ([{"name": "a", "x_min": 0.0, "x_max": 40.5}], "volume[0].x_max"),
        ([{"name": "a", "x_min": 0.0, "x_max": 1.0, "smoothing": -1.0}], "volume[0].smoothing"),
        ([{"x_min": 0.0, "x_max": 1.0}], "volume[0].name"),
        ([{"name": 3, "x_min": 0.0, "x_max": 1.0}], "volume[0].name"),
    ],
)
def test_volume_refusals(volumes, key):
    assert refuse(run_dict(volume=volumes)).key == key


def test_volume_names_and_edges():
    c = make_config(
        volume=[
            {"name": "Left_1-a", "x_min": -40, "x_max": 0, "smoothing": 0.5},
            {"name": "right", "x_min": 0, "x_max": 40},
        ]
    )
    assert c.volume == (VolumeConfig("Left_1-a", -40.0, 0.0, 0.5), VolumeConfig("right", 0.0, 40.0))


# ---- commands -----------------------------------------------------------------------------------


def test_check_command():
    c = make_config(method={"exchange": True}, trajectories={"count": 10})
    c.check_command("run")
    c.check_command("exact")  # [method] is ignored by exact runs, not refused
    assert _key(make_config().check_command, "run") == "trajectories"
    d = run_dict(
        particles={"count": 1, "statistics": "distinguishable"},
        method={"exchange": True},
        trajectories={"count": 10},
    )
    assert refuse(d).key == "method.exchange"
    # Built by hand (not through the loader), the command check still refuses it.
    hand = dataclasses.replace(c, particles=Particles(1, 1.0, "distinguishable"))
    assert _key(hand.check_command, "run") == "method.exchange"
    with pytest.raises(ValueError):
        c.check_command("cw")


def _key(fn, *args) -> str:
    with pytest.raises(ConfigError) as e:
        fn(*args)
    return e.value.key


def test_overrides():
    c = make_config(trajectories={"count": 100, "store": 20})
    assert c.with_overrides(samples=5).trajectories == TrajectoriesConfig(5, 12345, 5)
    assert c.with_overrides(seed=9).trajectories == TrajectoriesConfig(100, 9, 20)
    assert _key(c.with_overrides, 0) == "--samples"
    assert _key(lambda: c.with_overrides(seed=-3)) == "--seed"
    fresh = make_config().with_overrides(samples=40)
    assert fresh.trajectories == TrajectoriesConfig(40, 12345, 10)
    r = c.replace_section("time", save_every=4)
    assert r.time.save_every == 4 and r.time.frame_steps[:2] == (0, 4)
    assert _key(lambda: c.replace_section("grid", points=7)) == "grid.points"
    assert c.with_overrides() is c


# ---- loading ------------------------------------------------------------------------------------


def test_load_errors(tmp_path):
    missing = tmp_path / "nope.toml"
    assert _key(load_config, missing) == str(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text('schema = "bohmpower-run/1"\n[grid]\nx_min = = 1\n')
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    assert "line 3" in str(e.value)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b'title = "\xff\xfe"\n')
    assert _key(load_config, binary) == str(binary)
    assert _key(load_config, tmp_path) == str(tmp_path)  # a folder


def test_load_resolves_relative_to_the_file(tmp_path, run_file):
    path = run_file()
    c = load_config(path)
    assert c.base_dir == tmp_path and c == parse_config(run_dict(), tmp_path)


# ---- units --------------------------------------------------------------------------------------


def test_device_run_converts_to_atomic_units():
    """A GaAs (m* = 0.067) run in nm, eV, fs: every dimensioned value converts as pint says."""
    c = load_config(DATA / "device_double_barrier.toml")
    a = c.to_atomic()
    assert c.units.system == "device" and a.units.system == "atomic"

    def au(value, unit, target):
        return UREG.Quantity(value, unit).to(target).magnitude

    # pint carries CODATA 2022, the package CODATA 2018: lengths differ by 6.8e-10 (test_units.py).
    rel = 2e-9
    assert a.grid.x_max == pytest.approx(au(200.0, "nm", "bohr"), rel=rel)
    assert a.grid.absorber_width == pytest.approx(au(50.0, "nm", "bohr"), rel=rel)
    assert a.time.dt == pytest.approx(au(0.2, "fs", "atomic_unit_of_time"), rel=rel)
    assert a.time.window == pytest.approx(au(10.0, "fs", "atomic_unit_of_time"), rel=rel)
    assert a.time.n_steps == c.time.n_steps == 1500 and a.time.frame_steps == c.time.frame_steps
    db = a.potential[0]
    assert db.height == pytest.approx(au(0.3, "eV", "hartree"), rel=rel)
    assert db.gap == pytest.approx(au(5.0, "nm", "bohr"), rel=rel)
    drop = a.field[0]
    assert drop.bias == pytest.approx(au(0.1, "eV", "hartree"), rel=rel)
    assert drop.t_on == pytest.approx(au(50.0, "fs", "atomic_unit_of_time"), rel=rel)
    assert a.interaction.softening == pytest.approx(au(2.0, "nm", "bohr"), rel=rel)
    assert a.interaction.relative_permittivity == 12.9  # dimensionless: unchanged
    assert a.particles.mass == 0.067  # electron masses in both systems
    assert a.volume[1].smoothing == pytest.approx(au(0.5, "nm", "bohr"), rel=rel)
    # The packet given by energy: hbar^2 k^2 / (2 m) in atomic units is 0.1 eV in hartree.
    k = a.initial.packet[0].wavenumber
    assert 0.5 * k**2 / 0.067 == pytest.approx(au(0.1, "eV", "hartree"), rel=rel)
    # ... and in device units k = sqrt(E m / (hbar^2 / 2 m_e)), with hbar^2/(2 m_e) from pint.
    kin = UREG.Quantity(1.0, "hbar") ** 2 / (2 * UREG.Quantity(1.0, "electron_mass"))
    kin = kin.to("eV*nm**2").magnitude
    assert c.initial.packet[0].wavenumber == pytest.approx(math.sqrt(0.1 * 0.067 / kin), rel=rel)
    assert a.initial.packet[1].wavenumber == pytest.approx(au(0.45, "1/nm", "1/bohr"), rel=rel)
    assert a.numerics == c.numerics
    assert a.to_atomic() is a


def test_every_dimensioned_key_converts():
    """Rates, forces and curvatures too: build one device run using them and compare with pint."""
    d = run_dict(
        units={"system": "device"},
        grid={**ABSORBING, "absorber_strength": 0.5},
        potential=[
            {"kind": "harmonic", "omega": 0.5},
            {"kind": "soft_coulomb_well", "charge": 2.0},
        ],
        field=[
            {
                "kind": "uniform",
                "force": 0.02,
                "time_profile": "sine",
                "frequency": 0.3,
                "phase": 1.0,
            },
            {**DROP, "time_profile": "gaussian_pulse", "t0": 5.0, "duration": 2.0},
        ],
        interaction={"kind": "harmonic", "strength": 0.04},
    )
    c = parse_config(d, DATA)
    a = c.to_atomic()
    rel = 3e-9  # CODATA 2018 vs pint's 2022, up to two powers of length (test_units.py)
    q = UREG.Quantity
    assert a.potential[0].omega == pytest.approx(
        q(0.5, "rad/fs").to("rad/atomic_unit_of_time").m, rel=rel
    )
    assert a.potential[1].charge == 2.0 and a.potential[1].softening == pytest.approx(
        q(1.0, "nm").to("bohr").m, rel=rel
    )
    assert a.field[0].force == pytest.approx(q(0.02, "eV/nm").to("hartree/bohr").m, rel=rel)
    assert a.field[0].frequency == pytest.approx(
        q(0.3, "1/fs").to("1/atomic_unit_of_time").m, rel=rel
    )
    assert a.field[0].phase == 1.0
    assert a.field[1].t0 == pytest.approx(q(5.0, "fs").to("atomic_unit_of_time").m, rel=rel)
    assert a.field[1].duration == pytest.approx(q(2.0, "fs").to("atomic_unit_of_time").m, rel=rel)
    assert a.field[1].smoothing == pytest.approx(q(1.0, "nm").to("bohr").m, rel=rel)
    assert a.interaction.strength == pytest.approx(
        q(0.04, "eV/nm**2").to("hartree/bohr**2").m, rel=rel
    )
    assert a.grid.absorber_strength == pytest.approx(q(0.5, "eV").to("hartree").m, rel=rel)
    assert parse_config(tomllib.loads(a.to_toml()), DATA) == a


# ---- resolved run file, hash, registry ---------------------------------------------------------


def test_to_toml_round_trip_with_odd_strings():
    title = 'quote " backslash \\ newline \n tab \t bell \x07 del \x7f unicode é ∂'
    c = make_config(title=title)
    back = parse_config(tomllib.loads(c.to_toml()), c.base_dir)
    assert back == c and back.title == title


def test_config_hash_tracks_content():
    a, b = make_config(), make_config()
    assert a.config_hash() == b.config_hash()
    assert make_config(title="other").config_hash() != a.config_hash()
    c = make_config(time={"dt": 0.05, "t_end": 1.0, "save_every": 5})
    assert (
        c.config_hash()
        != make_config(time={"dt": 0.05, "t_end": 1.0, "save_every": 4}).config_hash()
    )


def test_describe_uses_the_run_units():
    text = describe(load_config(DATA / "device_double_barrier.toml"))
    for piece in (
        "0.067",
        "nm",
        "eV",
        "fs",
        "double_barrier",
        "12.9",
        "well",
        "device",
        "1500 steps",
    ):
        assert piece in text
    text = describe(make_config())
    assert "bohr" in text and "atomic_unit_of_time" in text


TREE = {
    "particles": Particles,
    "grid": GridConfig,
    "time": TimeConfig,
    "units": Units,
    "initial.packet": Packet,
    "initial.train": Train,
    "volume": VolumeConfig,
    "trajectories": TrajectoriesConfig,
    "method": MethodConfig,
    "energy": EnergyConfig,
    "numerics": NumericsConfig,
    "reservoirs": ReservoirsConfig,
    "steady_state": SteadyStateConfig,
}
KINDED = {"potential": PotentialPiece, "field": FieldPiece, "interaction": InteractionConfig}


def test_registry_and_dataclasses_agree():
    """Every field of the tree has a key in the registry and every key a field (energy -> wavenumber)."""
    for section, cls in TREE.items():
        fields = {f.name for f in dataclasses.fields(cls)}
        keys = {s.key for s in SECTIONS[section]} - {"energy"}
        assert fields == keys, section
    for base, cls in KINDED.items():
        fields = {f.name for f in dataclasses.fields(cls)}
        keys = {s.key for s in KEYS if s.section == base or s.section.startswith(base + ".")}
        assert fields == keys, base
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    assert {s.key for s in SECTIONS["top"]} | {"base_dir"} | set(TREE) - {
        "initial.packet",
        "initial.train",
    } | set(KINDED) | {"initial"} == fields
    # Dataclass defaults are the registry's defaults.
    for spec in KEYS:
        cls = TREE.get(spec.section)
        if cls is None or spec.required:
            continue
        field = {f.name: f for f in dataclasses.fields(cls)}.get(spec.key)
        if field is not None and field.default is not dataclasses.MISSING:
            assert field.default == spec.default, (spec.section, spec.key)


def test_dimensions_in_the_registry_are_known():
    from bohmpower.units import DIMENSIONS

    for spec in KEYS:
        assert (spec.dimension in DIMENSIONS) == (spec.type == "float"), spec
        if spec.required:
            assert spec.doc_default == "required"


def test_parse_does_not_modify_its_input():
    d = run_dict(initial=packets({"center": 0.0, "width": 2.0, "energy": 0.1}))
    before = copy.deepcopy(d)
    parse_config(d, DATA)
    assert d == before


def test_write_run_file_helper_agrees(tmp_path):
    path = write_run_file(tmp_path / "r.toml", run_dict(trajectories={"count": 4}))
    assert load_config(path).trajectories.count == 4
