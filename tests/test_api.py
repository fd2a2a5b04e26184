"""The Python interface (bohmpower.run / exact / save / load_result) and result files as xarray.

Every kind of result file (exact, exact with trajectories, cw at zeroth order, cw with the
interacting scheme) must open with ``xarray.open_datatree(path, engine="h5netcdf")`` with every
dimension named, and every variable must carry ``units`` (parsed by pint) and ``long_name``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import h5py
import numpy as np
import pint
import pytest
import xarray as xr

import bohmpower
from bohmpower.errors import ConfigError, ResultFileError
from tests.conftest import REPO, make_config, run_dict, write_run_file

TINY = dict(
    particles={"count": 2, "mass": 1.0, "statistics": "fermion"},
    grid={"x_min": -30.0, "x_max": 30.0, "points": 96, "boundary": "periodic"},
    time={"dt": 0.05, "t_end": 1.0, "save_every": 5},
    interaction={"kind": "soft_coulomb", "softening": 1.0},
    initial={"packet": [{"center": -5.0, "width": 1.5, "wavenumber": 1.0},
                        {"center": 5.0, "width": 1.5, "wavenumber": -1.0}]},
    volume=[{"name": "left", "x_min": -30.0, "x_max": 0.0},
            {"name": "centre", "x_min": -3.0, "x_max": 3.0, "smoothing": 0.5}],
    trajectories={"count": 192, "seed": 5, "store": 4},  # 3 blocks: block means are stored
)
KINDS = {
    "exact": ("exact", dict(TINY, trajectories=None)),
    "exact_trajectories": ("exact", TINY),
    "cw": ("run", dict(TINY, method={"exchange": False})),
    "cw_interacting": ("run", dict(TINY, method={"scheme": "interacting", "exchange": True,
                                                 "basis_size": 8})),
}


@pytest.fixture(scope="module")
def result_files(tmp_path_factory):
    """One file of each kind, written by bohmpower.exact / bohmpower.run and bohmpower.save."""
    folder = tmp_path_factory.mktemp("kinds")
    files = {}
    for name, (engine, sections) in KINDS.items():
        config = make_config(folder, **sections)
        result = (bohmpower.exact if engine == "exact" else bohmpower.run)(config)
        files[name] = bohmpower.save(result, folder / f"{name}.h5")
    return files


@pytest.mark.parametrize("kind", list(KINDS))
def test_open_datatree_names_every_dimension_and_every_variable_has_units(result_files, kind):
    ureg = pint.UnitRegistry()
    tree = xr.open_datatree(result_files[kind], engine="h5netcdf")
    with tree:
        for node in tree.subtree:
            for dim in node.ds.dims:
                assert not str(dim).startswith("phony"), (node.path, dim)
            for name, var in node.ds.variables.items():
                assert var.attrs.get("long_name"), (node.path, name)
                ureg.parse_expression(var.attrs["units"])  # raises on a unit pint cannot read
        assert tree["fields/density"].dims == ("time", "x")
        assert tree["volumes/centre/energy"].dims == ("time",)
        np.testing.assert_array_equal(tree["fields"].x.values, tree["grid"].x.values)
        window = tree["volumes/left/window"]
        assert window["power"].dims == ("window",)
        np.testing.assert_array_equal(window["window"].values, window["t_start"].values)
        assert window["window"].attrs["units"] == tree["time"].attrs["units"]
        assert tree["model/field_shape"].dims == ("field", "x")
        if kind != "exact":
            assert tree["trajectories/positions"].dims == ("sample", "time", "electron")
            assert tree["trajectories/positions"].shape == (4, 5, 2)
            assert tree["trajectories/weights"].dims == ("sample", "time")
        if kind == "exact_trajectories":
            te = tree["trajectory_estimates/volumes/left/window"]
            assert te["power_stderr"].dims == ("window",)
            # the contributing worlds of every estimate (compare's resolution rule), counts
            assert te["power_worlds"].dims == ("window",)
            assert te["power_worlds"].attrs["units"] == "1"
            assert tree["trajectory_estimates/volumes/left/energy_worlds"].dims == ("time",)
            assert 0 <= float(te["power_worlds"].min()) and float(te["power_worlds"].max()) <= 192
            assert tree["trajectory_estimates/fields/window/power_density"].dims == ("window", "x")
            assert tree["trajectory_estimates/blocks/volumes/left/energy"].dims == ("block", "time")
        if kind.startswith("cw"):
            assert tree["estimate_blocks/volumes/left/window/power"].dims == ("block", "window")
            assert tree["volumes/left/window/power_worlds"].dims == ("window",)
            assert tree["volumes/centre/particles_worlds"].dims == ("time",)
            assert tree["volumes/left/energy_worlds"].attrs["long_name"].startswith(
                "number of worlds that contributed to the local energy")
            assert tree["volumes/left/energy_stderr"].attrs["long_name"] == (
                "standard error of the local energy E_Omega")
        if kind == "cw_interacting":
            assert tree["diagnostics/basis/rank"].dims == ("step",)
            assert tree["diagnostics/basis/rank"].shape == (21,)  # 20 steps and the start


def _datasets(f: h5py.File) -> dict:
    out = {}
    f.visititems(lambda n, o: out.__setitem__(n, o) if isinstance(o, h5py.Dataset)
                 and b"not a netCDF variable" not in o.attrs.get("NAME", b"") else None)
    return out


@pytest.mark.parametrize("kind", ["exact_trajectories", "cw_interacting"])
def test_load_result_holds_every_dataset_of_the_file_with_its_units(result_files, kind):
    path = result_files[kind]
    tree = bohmpower.load_result(path)
    assert isinstance(tree, xr.DataTree)
    with h5py.File(path, "r") as f:
        datasets = _datasets(f)
        assert len(datasets) > 40
        for name, ds in datasets.items():
            group, _, var = name.rpartition("/")
            got = tree[group or "/"][var] if group else tree[var]
            np.testing.assert_array_equal(got.values, ds[()], err_msg=name)
            assert got.attrs["units"] == ds.attrs["units"], name
        assert tree.attrs["method"] == f.attrs["method"]
        assert tree.attrs["config_hash"] == f.attrs["config_hash"]
    path.rename(path.with_suffix(".moved"))  # the tree is in memory: the file is closed
    try:
        assert float(tree["volumes/left/energy"][0]) == float(tree["volumes/left/energy"].values[0])
    finally:
        path.with_suffix(".moved").rename(path)


def test_run_reports_progress_and_saves_the_file_the_command_line_writes(tmp_path):
    sections = KINDS["cw"][1]
    run = write_run_file(tmp_path / "run.toml", run_dict(**sections))
    calls = []
    result = bohmpower.run(run, samples=80, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(64, 80), (80, 80)]  # one call per block of sample ids
    saved = bohmpower.save(result, tmp_path / "api.h5")
    cli = tmp_path / "cli.h5"
    r = subprocess.run([sys.executable, "-m", "bohmpower", "run", str(run), "--samples", "80",
                        "-o", str(cli), "-q"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    a, b = bohmpower.load_result(saved), bohmpower.load_result(cli)
    for path in ("volumes/left/energy", "volumes/centre/window/power_stderr", "fields/density",
                 "global/norm", "trajectories/positions"):
        np.testing.assert_allclose(a[path].values, b[path].values, rtol=1e-12, atol=0,
                                   err_msg=path)
    with pytest.raises(ConfigError) as e:
        bohmpower.save(result, saved)
    assert e.value.key == "path" and "overwrite=True" in str(e.value)
    bohmpower.save(result, saved, overwrite=True)


def test_one_run_file_serves_both_engines_and_exact_says_it_ignores_method(tmp_path, caplog):
    run = write_run_file(tmp_path / "run.toml", run_dict(**dict(KINDS["cw"][1], trajectories=None,
                                                                 time={"dt": 0.05, "t_end": 0.5,
                                                                       "save_every": 5})))
    frames = []
    with caplog.at_level("INFO", logger="bohmpower"):
        result = bohmpower.exact(run, progress=lambda done, total: frames.append((done, total)))
    assert frames == [(1, 3), (2, 3), (3, 3)]
    assert "[method] is read by `bohmpower run` only; the exact solver ignores it" in caplog.text
    assert result.config.method is not None and result.trajectory_estimates is None
    r = subprocess.run([sys.executable, "-m", "bohmpower", "exact", str(run), "-o",
                        str(tmp_path / "e.h5")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "note: [method] is read by `bohmpower run` only" in r.stderr


def test_bad_arguments_name_what_to_change(tmp_path, result_files):
    with pytest.raises(TypeError, match="^config: expected a run file's path or a RunConfig"):
        bohmpower.run(42)
    with pytest.raises(TypeError, match="^progress: expected True"):
        bohmpower.exact(make_config(), progress="yes")
    with pytest.raises(TypeError, match="^result: expected what bohmpower.exact or"):
        bohmpower.save({"energy": 1.0}, tmp_path / "x.h5")
    with pytest.raises(ConfigError) as e:
        bohmpower.run(make_config())  # no [trajectories]
    assert e.value.key == "trajectories"
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(ResultFileError, match="not a bohmpower result file"):
        bohmpower.load_result(other)


def test_a_file_without_dimension_scales_is_refused_naming_the_reader_that_still_works(
        tmp_path, result_files):
    """Files written before every axis was a scale cannot be labelled by xarray: load_result says
    so and names the reader that still reads them."""
    old = shutil.copy(result_files["exact"], tmp_path / "old.h5")
    with h5py.File(old, "r+") as f:
        ds = f["fields/density"]
        for scale in list(ds.dims[1].values()):
            ds.dims[1].detach_scale(scale)
    with pytest.raises(ResultFileError, match="written by an older bohmpower") as e:
        bohmpower.load_result(old)
    assert "bohmpower.io.read_result" in str(e.value)
    assert bohmpower.io.read_result(old, fields=True)["fields"]["density"].shape == (5, 96)


def test_a_run_reports_the_steps_of_the_block_in_flight(tmp_path, monkeypatch, caplog):
    """Within-block progress: CWSolver calls its step observer after every step of each block,
    and `bohmpower run` turns that into log lines every WITHIN_BLOCK_INTERVAL seconds."""
    from bohmpower import cli
    from bohmpower.driver import CWSolver

    solver = CWSolver(make_config(tmp_path, **dict(TINY, method={"exchange": False},
                                                   trajectories={"count": 70, "seed": 1})))
    seen = []
    solver.step_observer = lambda first, step, n: seen.append((first, step, n))
    solver.run()
    n = solver.time.n_steps
    assert seen == [(0, s, n) for s in range(1, n + 1)] + [(64, s, n) for s in range(1, n + 1)]

    monkeypatch.setattr(cli, "WITHIN_BLOCK_INTERVAL", 0.0)
    observe = cli._within_block(cli._LogProgress(70, "samples"))
    with caplog.at_level("INFO", logger="bohmpower"):
        observe(64, 5, 20)
        observe(64, 20, 20)  # the block's end: its own line follows from the sample count
    assert caplog.messages == ["progress: block of samples from 64 at step 5/20 (25%)"]
    import io

    from tqdm import tqdm

    bar = tqdm(total=70, file=io.StringIO())
    cli._within_block(bar)(0, 7, 20)
    assert bar.postfix == "block from sample 0: step 7/20"
    bar.close()


def test_resumed_work_is_counted_as_done_but_not_in_the_rate(monkeypatch, caplog):
    """A resumed run reads finished blocks back; the progress line says so, and the rate (and
    the ETA) that follows counts only what this run computed."""
    import io

    from tqdm import tqdm

    from bohmpower import cli

    clock = iter([0.0, 10.0])
    monkeypatch.setattr(cli.time, "perf_counter", lambda: next(clock))
    sink = cli._LogProgress(100, "worlds")  # started at t = 0
    advance = cli._Advance(sink)
    with caplog.at_level("INFO", logger="bohmpower"):
        advance.skip(60)
        advance(20)  # 20 worlds in 10 s
    assert caplog.messages == ["progress: 60/100 worlds read back from the checkpoint",
                               "progress: 80/100 worlds, 2.00 worlds/s, ETA 10 s"]
    bar = tqdm(total=100, file=io.StringIO())
    cli._Advance(bar).skip(60)
    assert bar.n == 60 and bar.initial == 60  # tqdm's rate counts from ``initial``
