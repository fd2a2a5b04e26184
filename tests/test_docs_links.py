"""The repository's documentation stands on its own: every relative link and #anchor in README.md,
docs/*.md and examples/**/README.md resolves inside the repository, and no page cites the developer
guides (SPEC.md, THEORY.md) that a user of the repository does not have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"),
               *(REPO / "examples").glob("**/README.md")])

# [text](target) not preceded by "!" is a link, with "!" an image; both must resolve.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~)")


def _strip_code(text: str) -> str:
    """Text outside fenced code blocks and inline code spans (links there are not links)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _strip_code(path.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def links(path: Path) -> list[str]:
    return LINK.findall(_strip_code(path.read_text()))


def test_slug_follows_github():
    assert slug("3. Local power and its terms") == "3-local-power-and-its-terms"
    assert slug("## `[time]`".lstrip("# ")) == "time"
    assert slug('Correlated conditional wavefunctions (scheme = "interacting")') == \
        "correlated-conditional-wavefunctions-scheme--interacting"


def test_the_checker_finds_a_broken_link_and_anchor(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# Title\n")
    page.write_text("[a](there.md#title) [b](there.md#nothing) [c](missing.md) `[d](no.md)`\n")
    assert _broken(page) == ["there.md#nothing", "missing.md"]


def _broken(path: Path) -> list[str]:
    bad = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            bad.append(target)
            continue
        if anchor and (dest.is_dir() or dest.suffix != ".md" or anchor not in anchors(dest)):
            bad.append(target)
    return bad


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_and_anchors_resolve(path):
    assert _broken(path) == []


CITE_CASES = DOCS


@pytest.mark.parametrize("path", CITE_CASES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_page_cites_the_developer_guides(path):
    hits = [f"{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)
            if re.search(r"\b(SPEC|THEORY)(\.md)?\b", line)]
    assert hits == []


def test_theory_page_has_numbered_sections_in_order():
    heads = [m.group(1) for m in re.finditer(r"^## (\d+)\. ", (REPO / "docs/theory.md").read_text(),
                                             re.M)]
    assert heads == [str(i) for i in range(1, len(heads) + 1)] and len(heads) >= 9
