"""Fuzzing the loader: whatever the run file holds, parse_config returns a RunConfig or raises ConfigError.

Valid run files from tests/data/ are mutated at random (keys deleted, unknown keys added, values replaced
by values of random types including nan, inf, huge and negative numbers, lists and tables, keys moved
between sections), and random documents are built from the run file's own vocabulary. Anything other than
ConfigError (TypeError, OverflowError, KeyError, ...) is a bug. A config that loads must also survive
to_toml -> parse (equal), to_atomic, describe, config_hash and check_command.

The hypothesis profile is fixed (derandomized, no example database, bounded example counts) so CI runs the
same cases every time in a few seconds.
"""

from __future__ import annotations

import copy
import math
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bohmpower.config import KEYS, SECTIONS, RunConfig, describe, parse_config
from bohmpower.errors import ConfigError

DATA = Path(__file__).resolve().parent / "data"
BASES = [tomllib.loads(p.read_text()) for p in sorted(DATA.glob("*.toml"))]

FUZZ = settings(
    max_examples=250,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

KEY_NAMES = sorted(
    {s.key for s in KEYS} | {s.split(".")[0] for s in SECTIONS} | {"packet", "train", "eigenstate"}
)
WORDS = sorted({c for s in KEYS if s.choices for c in s.choices} | {"u.dat", "", "none"})

# Edge values get a branch of their own so that every run tries them on many keys.
EDGE = [
    math.nan,
    math.inf,
    -math.inf,
    10**400,
    -(10**400),
    2**63,
    -(2**63),
    1e308,
    -1e308,
    5e-324,
    # near the float limits of the run file (config.FLOAT_LIMIT, FLOAT_TINY) and of doubles
    1e30,
    -1e30,
    1.0000001e30,
    1e-30,
    9.9999e-31,
    1e200,
    1e-300,
    1.7976931348623157e308,
    2.2250738585072014e-308,
    0,
    -1,
    0.0,
    -0.0,
    -1.5,
    True,
    False,
    "",
    "1.0",
    [],
    {},
    [1.0],
    {"kind": "barrier"},
]
edge_values = st.sampled_from(EDGE)
scalars = st.one_of(
    st.text(max_size=8),
    st.sampled_from(WORDS),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-200, max_value=200),
    st.integers(min_value=-20, max_value=2000),
)
values = st.one_of(
    edge_values,
    scalars,
    st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.sampled_from(KEY_NAMES) | st.text(max_size=5), inner, max_size=4),
        ),
        max_leaves=8,
    ),
)


def containers(doc) -> list:
    """Every dict and list inside ``doc`` (including itself)."""
    out, stack = [], [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, (dict, list)):
            out.append(node)
            stack.extend(node.values() if isinstance(node, dict) else node)
    return out


def mutate(doc: dict, data) -> dict:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 4), label="n_mutations")):
        nodes = containers(doc)
        node = data.draw(st.sampled_from(nodes), label="node")
        op = data.draw(st.sampled_from(["delete", "add", "replace", "move"]), label="op")
        if isinstance(node, list):
            if not node:
                node.append(data.draw(values))
            elif op == "delete":
                node.pop(data.draw(st.integers(0, len(node) - 1)))
            else:
                node[data.draw(st.integers(0, len(node) - 1))] = data.draw(values)
            continue
        keys = list(node)
        if op == "add" or not keys:
            key = data.draw(st.sampled_from(KEY_NAMES) | st.text(min_size=1, max_size=6))
            node[key] = data.draw(values)
        elif op == "delete":
            del node[data.draw(st.sampled_from(keys))]
        elif op == "replace":
            node[data.draw(st.sampled_from(keys))] = data.draw(values)
        else:  # move a key to another table
            key = data.draw(st.sampled_from(keys))
            targets = [n for n in containers(doc) if isinstance(n, dict) and n is not node]
            if targets:
                target = data.draw(st.sampled_from(targets))
                target[key] = node.pop(key)
    return doc


def check(doc, base_dir: Path = DATA) -> str:
    """The property: a RunConfig that behaves ("loaded"), or a ConfigError naming a key
    ("refused"); anything else (another exception) fails the test."""
    try:
        config = parse_config(doc, base_dir)
    except ConfigError as e:
        assert isinstance(e.key, str) and e.message
        return "refused"
    assert isinstance(config, RunConfig)
    assert parse_config(tomllib.loads(config.to_toml()), config.base_dir) == config
    atomic = config.to_atomic()
    assert atomic.units.system == "atomic" and atomic.time.n_steps == config.time.n_steps
    describe(config)
    assert len(config.config_hash()) == 64
    for command in ("exact", "run"):
        try:
            config.check_command(command)
        except ConfigError:
            pass
    return "loaded"


@FUZZ
@given(base=st.sampled_from(BASES), data=st.data())
def test_mutated_run_files(base, data):
    assert check(mutate(base, data)) in ("loaded", "refused")


@FUZZ
@given(base=st.sampled_from(BASES), section=st.sampled_from(sorted(SECTIONS)), data=st.data())
def test_one_value_of_any_type(base, section, data):
    """Replace one key of a valid file, anywhere it appears, by a value of any type."""
    doc = copy.deepcopy(base)
    key = data.draw(st.sampled_from([s.key for s in SECTIONS[section]]))
    value = data.draw(values)
    tables = [n for n in containers(doc) if isinstance(n, dict) and key in n] or [doc]
    data.draw(st.sampled_from(tables))[key] = value
    assert check(doc) in ("loaded", "refused")


@settings(FUZZ, max_examples=150)
@given(doc=st.dictionaries(st.sampled_from(KEY_NAMES) | st.text(max_size=5), values, max_size=8))
def test_random_documents(doc):
    assert check(doc) in ("loaded", "refused")


@settings(FUZZ, max_examples=100)
@given(
    text=st.text(
        alphabet=st.sampled_from(list("[]=\"'.,\n #abcdefgk_xyz0123456789-+e")), max_size=60
    )
)
def test_random_toml_text(text):
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return  # not TOML at all: load_config reports that itself (tested in test_config.py)
    assert check(doc) in ("loaded", "refused")


# ---- a deterministic sweep: every key of every section, set to every edge value or deleted --------


def section_doc(section: str) -> tuple[dict, Callable[[dict], dict]]:
    """A valid run-file dict that uses ``section``, and a function returning that section's table."""
    from tests.conftest import run_dict

    absorbing = {
        "x_min": -40.0,
        "x_max": 40.0,
        "points": 128,
        "boundary": "absorbing",
        "absorber_width": 5.0,
        "absorber_strength": 1.0,
    }
    drop = {"kind": "linear_drop", "bias": 0.1, "x_left": -10.0, "x_right": 10.0}
    pieces = {
        "barrier": {"center": 0.0, "width": 1.0, "height": 1.0},
        "well": {"center": 0.0, "width": 1.0, "depth": 1.0},
        "double_barrier": {"center": 0.0, "width": 1.0, "height": 1.0, "gap": 2.0},
        "harmonic": {"omega": 0.1},
        "gaussian": {"center": 0.0, "width": 1.0, "height": 1.0},
        "soft_coulomb_well": {},
        "table": {"file": "u.dat"},
    }
    profiles = {
        "turn_on": {"t_on": 1.0},
        "sine": {"frequency": 0.1},
        "gaussian_pulse": {"t0": 1.0, "duration": 0.5},
    }
    base, _, kind = section.partition(".")
    if section == "top":
        return run_dict(), lambda d: d
    if base == "potential":
        piece = {"kind": kind or "harmonic", **pieces[kind or "harmonic"]}
        return run_dict(potential=[piece]), lambda d: d["potential"][0]
    if section.startswith("field.time_profile."):
        profile = section.rsplit(".", 1)[1]
        piece = {**drop, "time_profile": profile, **profiles[profile]}
        return run_dict(field=[piece]), lambda d: d["field"][0]
    if base == "field":
        piece = {"kind": "uniform", "force": 0.01} if kind == "uniform" else drop
        return run_dict(grid=absorbing, field=[piece]), lambda d: d["field"][0]
    if base == "interaction":
        inter = {"kind": kind or "soft_coulomb"}
        if kind == "harmonic":
            inter["strength"] = 1.0
        return run_dict(interaction=inter), lambda d: d["interaction"]
    if section == "initial":
        return run_dict(initial={"many_body_state": 0}), lambda d: d["initial"]
    if section == "initial.packet":
        return run_dict(), lambda d: d["initial"]["packet"][0]
    if section == "initial.train":
        train = {"count": 1, "first_center": 0.0, "spacing": 1.0, "width": 1.0, "energy": 0.1}
        return run_dict(initial={"train": train}), lambda d: d["initial"]["train"]
    if section == "initial.eigenstate":
        return (
            run_dict(
                potential=[{"kind": "harmonic", "omega": 0.1}],
                initial={"eigenstate": [{"index": 0}]},
            ),
            lambda d: d["initial"]["eigenstate"][0],
        )
    if section == "volume":
        return run_dict(), lambda d: d["volume"][0]
    if section == "grid":
        return run_dict(grid=absorbing), lambda d: d["grid"]
    if section in ("reservoirs", "steady_state"):
        from tests.test_devices_open import OPEN

        return copy.deepcopy(OPEN), lambda d: d[section]
    doc = run_dict()  # has units, particles, time
    doc.setdefault(section, {"trajectories": {"count": 5}}.get(section, {}))
    return doc, lambda d: d[section]


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_key_with_every_edge_value(section, tmp_path):
    (tmp_path / "u.dat").write_text("-40 0\n0 1\n40 0\n")
    doc, table_of = section_doc(section)
    assert isinstance(parse_config(copy.deepcopy(doc), tmp_path), RunConfig), (
        "the template is valid"
    )
    for spec in SECTIONS[section]:
        variants = [copy.deepcopy(doc) for _ in EDGE] + [copy.deepcopy(doc)]
        for variant, value in zip(variants, EDGE):
            table_of(variant)[spec.key] = value
        table_of(variants[-1]).pop(spec.key, None)
        for variant in variants:
            check(variant, tmp_path)


def test_valid_bases_pass_the_property():
    for base in BASES:
        assert isinstance(parse_config(copy.deepcopy(base), DATA), RunConfig)
        check(base)
