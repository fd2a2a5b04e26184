"""Example 07 (an open GaAs resonant-tunnelling diode, I(V) at 77 K and 300 K), shrunk for CI."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from bohmpower.cli import main
from bohmpower.config import parse_config
from bohmpower.devices.sweep import landauer_curve, read_sweep
from tests.conftest import write_run_file

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "07_rtd_open_iv"
BIASES = np.linspace(0.04, 0.32, 8)  # the README's sweep


def _config(name: str):
    return parse_config(tomllib.loads((EXAMPLE / name).read_text()), EXAMPLE)


@pytest.mark.parametrize("name", ["rtd_77K.toml", "rtd_300K.toml", "rtd_77K_interacting.toml"])
def test_example_07_run_files_pass_check(name, capsys):
    assert main(["check", str(EXAMPLE / name)]) == 0
    out = capsys.readouterr().out
    assert "open system" in out and "time.dt" not in out  # no phase warning at dt = 0.1 fs
    assert "softening" not in out.split("open system")[1]  # the pair potential's core resolved


def test_example_07_interacting_run_file_is_the_77K_one_with_interaction():
    import dataclasses

    plain, inter = _config("rtd_77K.toml"), _config("rtd_77K_interacting.toml")
    assert inter.interaction.kind == "soft_coulomb"
    assert dataclasses.replace(inter, interaction=plain.interaction, title=plain.title) == plain


def test_example_07_landauer_curve_has_the_negative_differential_resistance():
    """The transfer-matrix I(V) of the example's device: a peak where the well's resonance crosses
    the emitter's band bottom, then a valley; temperature fills the valley and raises the
    low-bias current (thermally activated electrons over the resonance)."""
    j77 = landauer_curve(_config("rtd_77K.toml"), BIASES)
    j300 = landauer_curve(_config("rtd_300K.toml"), BIASES)
    for j, ratio in ((j77, 4.0), (j300, 2.0)):
        peak = int(np.argmax(j))
        assert 0.12 <= BIASES[peak] <= 0.2
        assert j[peak] / j[peak:].min() > ratio  # peak-to-valley ratio
        assert np.all(np.diff(j[: peak + 1]) > 0) and np.all(np.diff(j[peak:peak + 3]) < 0)
    assert j300[0] > 5 * j77[0]
    assert j300[-1] > j77[-1]


def test_example_07_shrunk_sweep_runs_and_draws_the_figure(tmp_path):
    d = tomllib.loads((EXAMPLE / "rtd_77K.toml").read_text())
    d["trajectories"]["count"] = 2
    d["time"]["t_end"] = 1100.0  # one injection period (515 fs) after the warm-up
    d["steady_state"]["warm_up"] = 580.0
    run = write_run_file(tmp_path / "rtd.toml", d)
    out = tmp_path / "sweep"
    assert main(["sweep", str(run), "--bias", "0.16:0.24:2", "-o", str(out), "-q"]) == 0
    assert (out / "rtd.iv.png").stat().st_size > 10_000
    sw = read_sweep(out)
    assert len(sw["bias"]) == 2
    assert np.all(np.isfinite(sw["exit_current"]))
