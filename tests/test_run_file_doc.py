"""docs/run-file.md and the key registry of bohmpower.config agree exactly, both ways.

Each table of the page is preceded by ``<!-- section: NAME -->`` (NAME is a registry section such as
``grid`` or ``potential.barrier``); its rows give key, type, dimension, default and allowed range.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from bohmpower.config import KEYS, SECTIONS, parse_config

DOC = Path(__file__).resolve().parent.parent / "docs" / "run-file.md"
HEADER = ["key", "type", "dimension", "default", "allowed", "meaning"]


def doc_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Map section -> rows (dicts keyed by HEADER) of every marked table."""
    lines = text.splitlines()
    tables: dict[str, list[dict[str, str]]] = {}
    for i, line in enumerate(lines):
        m = re.fullmatch(r"<!-- section: (\S+) -->", line.strip())
        if not m:
            continue
        section = m.group(1)
        assert section not in tables, f"section {section} documented twice"
        header = [c.strip() for c in lines[i + 1].strip().strip("|").split("|")]
        assert header == HEADER, f"table of {section} has columns {header}"
        assert set(lines[i + 2].replace("|", "").strip()) <= {"-", ":", " "}
        rows = []
        for row in lines[i + 3 :]:
            if not row.strip().startswith("|"):
                break
            cells = [c.strip() for c in row.strip().strip("|").split("|")]
            assert len(cells) == len(HEADER), f"{section}: malformed row {row!r}"
            cells[0] = cells[0].strip("`")
            rows.append(dict(zip(HEADER, cells)))
        tables[section] = rows
    return tables


@pytest.fixture(scope="module")
def tables():
    return doc_tables(DOC.read_text())


def test_every_registry_section_is_documented_and_no_other(tables):
    assert set(tables) == set(SECTIONS)


def test_every_key_is_documented_and_no_other(tables):
    documented = {(s, row["key"]) for s, rows in tables.items() for row in rows}
    registry = {(spec.section, spec.key) for spec in KEYS}
    assert documented - registry == set(), "documented but not in the code"
    assert registry - documented == set(), "in the code but not documented"
    for s, rows in tables.items():
        keys = [row["key"] for row in rows]
        assert len(keys) == len(set(keys)), f"{s}: a key listed twice"


def test_type_dimension_default_and_range_match(tables):
    specs = {(spec.section, spec.key): spec for spec in KEYS}
    for section, rows in tables.items():
        for row in rows:
            spec = specs[(section, row["key"])]
            where = f"{section}.{row['key']}"
            assert row["type"] == spec.doc_type, where
            assert row["dimension"] == spec.doc_dimension, where
            assert row["default"] == spec.doc_default, where
            assert row["allowed"] == spec.allowed, where
            assert row["meaning"], f"{where}: say what the key means"


def test_parser_sees_a_changed_doc(tables):
    """The check can fail: drop one row, rename one key, change one default."""
    text = DOC.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `points` |"))
    assert ("grid", "points") not in {
        (s, r["key"]) for s, rs in doc_tables(text.replace(row + "\n", "")).items() for r in rs
    }
    changed = doc_tables(text.replace(row, row.replace("even, >= 8", "even, >= 4")))
    assert next(r for r in changed["grid"] if r["key"] == "points")["allowed"] == "even, >= 4, <= 2**24"


def test_worked_example_is_valid():
    """The worked example at the end of the page loads."""
    text = DOC.read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.DOTALL)
    assert blocks, "the page has a TOML example"
    for block in blocks:
        parse_config(tomllib.loads(block), DOC.parent).check_command("exact")
