"""Example 03 (one electron through a biased GaAs double barrier, device units), shrunk: run, plot, check."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np

from bohmpower.io import read_result
from tests.conftest import run_example

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "03_resonant_tunnelling_diode"


def test_example_03_shrunk(tmp_path: Path) -> None:
    config = tomllib.loads((EXAMPLE / "run.toml").read_text())
    assert config["particles"]["count"] == 1 and config["units"]["system"] == "device"
    # t_end = 240 fs instead of 360: the packet (launched 80 nm before the well at 0.44 nm/fs) is in
    # the well near t = 180-230 fs, so every volume is reached
    config["time"]["t_end"] = 240.0
    out = run_example(EXAMPLE, tmp_path, config)

    r = read_result(out, fields=True)
    # the file speaks device units
    assert r["units"] == {"time": "fs", "x": "nm"}
    assert set(r["volumes"]) == {"emitter", "well", "collector"}
    for name, vol in r["volumes"].items():
        assert vol["units"]["energy"] == "eV", name
        for key in ("power", "field_work", "quantum", "boundary_flux", "interaction", "absorbed"):
            assert vol["units"][key] == "eV/fs", (name, key)
        data, win = vol["data"], vol["window"]
        scale = max(np.max(np.abs(win[k])) for k in ("power", "field_work", "boundary_flux"))
        assert scale > 0.0, name  # the packet reached every volume
        # one electron: no pair force, P_C is identically zero
        assert np.all(data["interaction"] == 0.0), name
        assert np.all(win["interaction"] == 0.0), name
        # the window balance holds exactly (both sides accumulated every step); 1e-9 of the largest
        # term leaves room for summation order only
        total = (win["field_work"] + win["interaction"] + win["quantum"] + win["boundary_flux"]
                 - win["absorbed"])
        np.testing.assert_allclose(win["power"], total, rtol=0, atol=1e-9 * scale, err_msg=name)
    # the field delivers energy where the drop is: the ramp [-7.5, 7.5] nm crosses every volume, and
    # while the packet passes the well the field work there is positive (the electron runs down the drop)
    assert np.max(r["volumes"]["well"]["window"]["field_work"]) > 0.0

    # whole-space field work: integral of q E J dx (/fields/field_work_density) equals /global/power
    # at every frame. They agree to a few 1e-7 of the largest value, not to round-off (the stored
    # density and the global integral are evidently not the same sum, e.g. a density cutoff); 1e-5 of
    # the largest value is far below any factor, sign or unit error (eV/nm/fs times nm vs eV/fs)
    x = r["x"]
    dx = x[1] - x[0]
    whole = r["fields"]["field_work_density"].sum(axis=1) * dx
    glob = r["global"]["power"]
    assert np.max(np.abs(glob)) > 0.0
    np.testing.assert_allclose(whole, glob, rtol=0, atol=1e-5 * np.max(np.abs(glob)))
