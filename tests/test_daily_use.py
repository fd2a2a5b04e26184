"""Small things a daily user meets: `--version`, "did you mean" for a mistyped key, and default result
names that keep an exact and a conditional-wavefunction run of the same folder apart."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bohmpower import __version__
from bohmpower.config import parse_config
from bohmpower.errors import ConfigError
from tests.conftest import REPO, run_dict, write_run_file


def bohmpower(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bohmpower", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or REPO, timeout=600)


def test_version_prints_the_package_version():
    r = bohmpower("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"bohmpower {__version__}", r.stdout + r.stderr


@pytest.mark.parametrize("section, typo, meant", [("time", "t_ned", "time.t_end"),
                                                  ("grid", "pionts", "grid.points"),
                                                  ("particles", "statistic", "particles.statistics")])
def test_a_mistyped_key_gets_the_closest_allowed_key(section, typo, meant):
    d = run_dict()
    d[section][typo] = d[section].pop(meant.split(".")[1], 1)
    with pytest.raises(ConfigError) as info:
        parse_config(d, REPO)
    assert f"did you mean '{meant}'?" in str(info.value)


def test_a_key_like_no_other_gets_no_guess():
    d = run_dict()
    d["grid"]["zzzzzz"] = 1
    with pytest.raises(ConfigError) as info:
        parse_config(d, REPO)
    assert "did you mean" not in str(info.value) and "allowed keys" in str(info.value)


def test_default_result_names_tell_the_engines_apart(tmp_path):
    """`exact RUN.toml` writes RUN.exact.h5, and `run RUN.toml` writes RUN.cw.h5 (help text says so)."""
    path = write_run_file(tmp_path / "one.toml", run_dict())
    r = bohmpower("exact", path, "-q")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "one.exact.h5").exists() and not (tmp_path / "one.h5").exists()
    for cmd, name in (("exact", "RUN.exact.h5"), ("run", "RUN.cw.h5")):
        assert f"default: {name}" in bohmpower(cmd, "--help").stdout
