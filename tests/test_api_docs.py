"""The API page (docs/api.md, generated from the docstrings by mkdocstrings) builds with warnings
as errors (mkdocs --strict): a docstring mkdocstrings cannot parse, or an object that no longer
exists, fails this test."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_the_api_page_builds_from_the_docstrings_with_warnings_as_errors(tmp_path):
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f",
                        str(REPO / "mkdocs.yml"), "-d", str(site)],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr
    page = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("bohmpower.api.run", "bohmpower.api.load_result", "bohmpower.api.save",
                 "bohmpower.driver.ExactSolver", "bohmpower.compare.compare_files"):
        assert name in page, name
    assert "progress(done, total)" in page  # a docstring's text, not only the signature
