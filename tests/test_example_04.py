"""Example 04 (a train of >= 50 electrons through a biased channel), shrunk for CI: run, plot, check."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from itertools import pairwise
from pathlib import Path

import h5py
import numpy as np

from bohmpower.io import read_result
from tests.conftest import write_run_file

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "04_large_n_channel"


def shrunk_config() -> dict:
    """The example's run file with the same physics on a coarse grid, over a short time, serial."""
    config = tomllib.loads((EXAMPLE / "run.toml").read_text())
    assert config["particles"]["count"] >= 50
    assert config["method"]["exchange"] is False
    # 50 electrons (the minimum) with the train's head at +30, inside the channel, so that
    # the train fills every tile from the start and the field works on it over the whole short run
    n = 50
    config["particles"]["count"] = n
    train = config["initial"]["train"]
    train["count"] = n
    train["first_center"] = 30.0 - (n - 1) * train["spacing"]
    # 0.5 bohr spacing, as the example's own grid: at 1 bohr (pi/dx = 3.14/bohr, which the run-file
    # rule accepts for k0 = 1 plus a few 1/(2 width) = 0.2 and the ~1.5/bohr the drop can add) the
    # conditional wavefunctions put 2.5e-6 of their probability in the top 10 % of the wavenumbers
    # by t = 1, and the CW engine's resolution check (the exact engine's, 1e-6) stops the run
    # the tail at -215 is 3 widths clear of the left layer ([-270, -240]); in 12 time units the head
    # (v <~ 1.5) stays 3 widths clear of the right one ([90, 120])
    config["grid"].update(x_min=-270.0, x_max=120.0, points=780, absorber_width=30.0)
    for vol in config["volume"]:
        if vol["name"] == "cell":
            vol.update(x_min=-270.0, x_max=120.0)
    config["time"].update(t_end=12.0, save_every=10, window=4.0)
    config["trajectories"].update(count=64, store=4)
    return config


def test_example_04_shrunk(tmp_path: Path) -> None:
    config = shrunk_config()
    run = tmp_path / "run.toml"
    write_run_file(run, config)
    out = tmp_path / "out.h5"
    subprocess.run([sys.executable, "-m", "bohmpower", "run", str(run), "-o", str(out), "-q"],
                   check=True, cwd=tmp_path)
    plotted = subprocess.run([sys.executable, str(EXAMPLE / "plot.py"), str(out)], check=True,
                             capture_output=True, text=True)
    png = out.with_suffix(".png")
    assert png.exists() and png.stat().st_size > 10_000, plotted.stdout

    r = read_result(out, fields=True)
    n = int(r["attrs"]["n_particles"])
    assert n == config["particles"]["count"] >= 50
    assert r["attrs"]["method"] == "cw"
    x = r["x"]
    dx = x[1] - x[0]

    # the window terms of every volume add up to its window power (docs/result-file.md: the balance
    # holds exactly in every world, so the ensemble means agree to round-off; 1e-9 of the scale)
    tiles = [name for name in r["volumes"] if name.startswith("ch")]
    assert len(tiles) >= 6
    for name, vol in r["volumes"].items():
        win = vol["window"]
        total = (win["field_work"] + win["interaction"] + win["quantum"] + win["boundary_flux"]
                 - win["absorbed"])
        scale = max(np.max(np.abs(win[k])) for k in ("power", "field_work", "boundary_flux"))
        assert scale > 0.0, name  # every volume, the tiles too, has been reached
        np.testing.assert_allclose(win["power"], total, rtol=0, atol=1e-9 * scale, err_msg=name)

    # the tiles are adjacent and cover the channel, i.e. the ramp of the drive
    edges = sorted((r["volumes"][t]["attrs"]["x_min"], r["volumes"][t]["attrs"]["x_max"]) for t in tiles)
    assert all(a[1] == b[0] for a, b in pairwise(edges))
    drop = config["field"][0]
    assert edges[0][0] == drop["x_left"] and edges[-1][1] == drop["x_right"]

    # the whole cell's field work is the global power over all space (THEORY.md: the interaction and
    # quantum terms integrate to zero, nothing crosses the grid ends); both are ensemble means, so they
    # must agree within 3 combined standard errors (plus round-off where both errors vanish at t = 0)
    cell = r["volumes"]["cell"]["data"]
    glob = r["global"]
    sigma = np.hypot(cell["field_work_stderr"], glob["power_stderr"])
    fw_scale = np.max(np.abs(cell["field_work"]))
    assert fw_scale > 0.0
    assert np.all(np.abs(cell["field_work"] - glob["power"]) <= 3.0 * sigma + 1e-12 * fw_scale)

    # a second route to the same number: integral of q E(x, t) J(x, t) dx with the stored ensemble
    # current and the stored drive (q = -e: the force is -E). Again within 3 standard errors.
    with h5py.File(out, "r") as f:
        force = -np.einsum("ft,fx->tx", f["model/time_profile"][()], f["model/field_shape"][()])
    from_current = np.sum(force * r["fields"]["current"], axis=1) * dx
    assert np.all(np.abs(from_current - cell["field_work"])
                  <= 3.0 * cell["field_work_stderr"] + 1e-9 * fw_scale)
    # the drop pushes the electrons to +x and they move to +x: the field does positive work
    assert np.all(cell["field_work"][1:] > 0.0)

    # the density integrates to N times the surviving fraction of the worlds: every world carries N
    # electrons of weight w, and the ensemble density and norm are means over the same worlds. The
    # tolerance (1e-6 of N) is far below one standard error of the norm and far above round-off.
    norm = glob["norm"]
    assert np.all((norm > 0.0) & (norm <= 1.0 + 1e-12))
    np.testing.assert_allclose(np.sum(r["fields"]["density"], axis=1) * dx, n * norm,
                               rtol=0, atol=1e-6 * n)
