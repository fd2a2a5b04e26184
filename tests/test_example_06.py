"""Example 06 (strong collision, interacting scheme against its basis size), shrunk for CI: the
convergence script runs end to end, and before the collision every setting agrees with exact."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from bohmpower.compare import compare_files

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "06_strong_collision_icwf"


def _shrunk(name: str, out: Path) -> Path:
    text = (EXAMPLE / name).read_text()
    # t_end = 4 instead of 30 (80 steps, packets still approaching) and 128 worlds: the whole
    # pipeline, not the collision (docs/accuracy.md has the full runs)
    assert "t_end = 30.0" in text
    text = text.replace("t_end = 30.0", "t_end = 4.0").replace("count = 1024", "count = 128")
    assert tomllib.loads(text)["time"]["t_end"] == 4.0
    path = out / name
    path.write_text(text)
    return path


def test_example_06_shrunk(tmp_path: Path) -> None:
    runs = {name: _shrunk(name, tmp_path) for name in ("exact.toml", "zeroth.toml", "icwf.toml")}
    for command, name, h5 in (("exact", "exact.toml", "exact.h5"), ("run", "zeroth.toml", "zeroth.h5")):
        subprocess.run([sys.executable, "-m", "bohmpower", command, str(runs[name]), "-o",
                        str(tmp_path / h5), "-q"], check=True)
    r = subprocess.run([sys.executable, str(EXAMPLE / "convergence.py"), str(tmp_path), "--sizes",
                        "8", "16", "--template", str(runs["icwf.toml"])],
                       capture_output=True, text=True, check=True)
    assert "zeroth order" in r.stdout and "M = 16" in r.stdout, r.stdout
    assert (tmp_path / "convergence.png").stat().st_size > 10_000
    # Before the collision no world has reached the central volume [-3, 3] yet (exact occupancy
    # 1e-3, every estimate 0 with a zero error bar): judge the volumes that 128 worlds resolve.
    for h5 in ("zeroth.h5", "icwf_8.h5", "icwf_16.h5"):
        cmp = compare_files(tmp_path / "exact.h5", tmp_path / h5)
        worst = max(r.agreement.max_abs_z for r in cmp.rows
                    if r.agreement is not None and r.volume != "center")
        assert worst < cmp.overall.max_bound, (h5, cmp.table())
    split = {r.quantity for r in compare_files(tmp_path / "exact.h5", tmp_path / "icwf_16.h5").rows}
    assert {"quantum_flux", "quantum_nonlocal"} <= split
