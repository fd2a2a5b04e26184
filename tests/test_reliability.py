"""Reliability promises of docs/reliability.md (issue 11): no silent wrong result, no lost work, no
traceback. Each test states the promise it checks and fails on the code before the fix."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from bohmpower import checkpoint as ckpt_mod
from bohmpower.cli import main
from tests.conftest import REPO, run_dict, write_run_file

ENV = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def cw_run(samples=70, **over):
    """A small CW run: 70 samples = blocks 0-63 and 64-69."""
    d = run_dict(
        grid={"x_min": -30.0, "x_max": 30.0, "points": 64, "boundary": "periodic"},
        time={"dt": 0.05, "t_end": 0.5, "save_every": 5},
        initial={"packet": [{"center": -4.0, "width": 1.5, "wavenumber": 0.6}]},
        volume=[{"name": "dev", "x_min": -3.0, "x_max": 3.0}],
        trajectories={"count": samples, "seed": 5, "store": 2},
        method={"exchange": False},
    )
    d.update(over)
    return d


def exact_run(**over):
    d = run_dict(grid={"x_min": -30.0, "x_max": 30.0, "points": 64, "boundary": "periodic"},
                 time={"dt": 0.05, "t_end": 0.5, "save_every": 5})
    d.update(over)
    return d


def cli(args, caplog):
    """Run the command line in-process; returns (exit code, what it logged)."""
    caplog.clear()
    code = main([str(a) for a in args])
    return code, caplog.text


def ckpt_dir(out: Path) -> Path:
    return Path(str(out) + ".checkpoint")


# ------------------------------------------------------------------------------------------------
# Item 1: the run identity covers table contents and the numerics version
# ------------------------------------------------------------------------------------------------


def test_editing_a_table_file_between_stop_and_resume_is_refused(tmp_path, caplog):
    table = tmp_path / "tab.dat"
    x = np.linspace(-30, 30, 61)
    np.savetxt(table, np.c_[x, 0.01 * np.exp(-x ** 2)])
    run = write_run_file(tmp_path / "run.toml", cw_run(potential=[{"kind": "table",
                                                                   "file": "tab.dat"}]))
    out = tmp_path / "out.h5"
    code, err = cli(["run", run, "-o", out, "-q", "--keep-checkpoint"], caplog)
    assert code == 0, err
    out.unlink()  # as if stopped before the end: the checkpoint holds every block
    np.savetxt(table, np.c_[x, 0.02 * np.exp(-x ** 2)])
    code, err = cli(["run", run, "-o", out, "-q", "--resume"], caplog)
    assert code == 2, err
    assert "table file" in err and not out.exists()


def test_another_numerics_version_is_not_resumed(tmp_path, caplog, monkeypatch):
    run = write_run_file(tmp_path / "run.toml", cw_run())
    out = tmp_path / "out.h5"
    assert cli(["run", run, "-o", out, "-q", "--keep-checkpoint"], caplog)[0] == 0
    out.unlink()
    monkeypatch.setattr(ckpt_mod, "NUMERICS_VERSION", ckpt_mod.NUMERICS_VERSION + 1)
    code, err = cli(["run", run, "-o", out, "-q", "--resume"], caplog)
    assert code == 2 and "numerics_version" in err and not out.exists()


def test_a_finished_run_removes_its_checkpoint_unless_asked_to_keep_it(tmp_path, caplog):
    """Issue 12: on success the checkpoint is removed and the log says so; --keep-checkpoint keeps
    it (saying where and its size), its block files compressed (zip deflate), and a resume from it
    gives the same result to the bit."""
    import zipfile

    caplog.set_level("INFO")
    run = write_run_file(tmp_path / "run.toml", cw_run())
    out, kept = tmp_path / "out.h5", tmp_path / "kept.h5"
    code, err = cli(["run", run, "-o", out], caplog)
    assert code == 0 and out.exists() and not ckpt_dir(out).exists(), err
    assert f"checkpoint {ckpt_dir(out)} removed" in err and "--keep-checkpoint" in err
    code, err = cli(["run", run, "-o", kept, "--keep-checkpoint"], caplog)
    assert code == 0 and f"checkpoint kept in {ckpt_dir(kept)}" in err and " MB;" in err
    blocks = sorted(ckpt_dir(kept).glob("block-*.npz"))
    assert [b.name for b in blocks] == ["block-0-63.npz", "block-64-69.npz"]
    for block in blocks:
        with zipfile.ZipFile(block) as z:
            assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    _assert_bitwise_equal_results(out, kept)
    kept.unlink()
    blocks[1].unlink()  # resume: block 0-63 read back, 64-69 computed again
    code, err = cli(["run", run, "-o", kept, "--resume"], caplog)
    assert code == 0 and "64 of 70 samples already done" in err, err
    assert not ckpt_dir(kept).exists()
    _assert_bitwise_equal_results(out, kept)


# ------------------------------------------------------------------------------------------------
# Item 2: stale blocks are never merged
# ------------------------------------------------------------------------------------------------


def test_blocks_without_a_manifest_are_refused_naming_the_folder(tmp_path, caplog):
    run = write_run_file(tmp_path / "run.toml", cw_run())
    out = tmp_path / "out.h5"
    assert cli(["run", run, "-o", out, "-q", "--keep-checkpoint"], caplog)[0] == 0
    out.unlink()
    (ckpt_dir(out) / "manifest.json").unlink()
    for extra in (["--resume"], []):
        code, err = cli(["run", run, "-o", out, "-q", *extra], caplog)
        assert code == 2, err
        assert str(ckpt_dir(out)) in err and "manifest" in err and not out.exists()
    assert len(list(ckpt_dir(out).glob("block-*.npz"))) == 2  # nothing deleted


def test_a_block_of_another_run_is_never_merged(tmp_path, caplog):
    """Block files carry their run's identity: a block copied from another run is refused."""
    a = write_run_file(tmp_path / "a.toml", cw_run())
    b = write_run_file(tmp_path / "b.toml", cw_run(trajectories={"count": 70, "seed": 6,
                                                                  "store": 2}))
    out_a, out_b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert cli(["run", a, "-o", out_a, "-q", "--keep-checkpoint"], caplog)[0] == 0
    assert cli(["run", b, "-o", out_b, "-q", "--keep-checkpoint"], caplog)[0] == 0
    out_a.unlink()
    name = "block-0-63.npz"
    (ckpt_dir(out_a) / name).write_bytes((ckpt_dir(out_b) / name).read_bytes())
    code, err = cli(["run", a, "-o", out_a, "-q", "--resume"], caplog)
    assert code == 2 and name in err and "another run" in err and not out_a.exists()


# ------------------------------------------------------------------------------------------------
# Item 3: one run per checkpoint folder; temporary files unique per process
# ------------------------------------------------------------------------------------------------


def test_a_second_run_on_a_locked_output_is_refused_with_the_holders_pid(tmp_path, caplog):
    run = write_run_file(tmp_path / "run.toml", cw_run())
    out = tmp_path / "out.h5"
    lock = Path(str(ckpt_dir(out)) + ".lock")
    with open(lock, "w") as holder:  # another run holding the lock (flock is per open file)
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write("424242\n")
        holder.flush()
        code, err = cli(["run", run, "-o", out, "-q"], caplog)
        assert code == 2 and "424242" in err and "another bohmpower run" in err
        assert not ckpt_dir(out).exists() and not out.exists()
    code, err = cli(["run", run, "-o", out, "-q"], caplog)  # released: the run goes ahead
    assert code == 0, err


def test_the_lock_is_released_when_its_holder_is_killed(tmp_path):
    lock = tmp_path / "x.checkpoint.lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, time
        fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX); print("locked", flush=True); time.sleep(60)""")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    c = ckpt_mod.Checkpoint(tmp_path / "x", {"a": 1})
    with pytest.raises(Exception, match="another bohmpower run"):
        c.lock()
    holder.kill()
    holder.wait()
    c.lock()
    c.unlock()


def test_temporary_result_and_block_names_are_unique_per_process(tmp_path):
    from bohmpower.io import _tmp_name

    assert str(os.getpid()) in _tmp_name(tmp_path / "out.h5").name


# ------------------------------------------------------------------------------------------------
# Item 4: non-finite block values stop the run naming the block
# ------------------------------------------------------------------------------------------------


def test_a_hand_edited_block_with_nan_is_not_merged(tmp_path, caplog):
    run = write_run_file(tmp_path / "run.toml", cw_run())
    out = tmp_path / "out.h5"
    assert cli(["run", run, "-o", out, "-q", "--keep-checkpoint"], caplog)[0] == 0
    out.unlink()
    block = ckpt_dir(out) / "block-64-69.npz"
    with np.load(block) as z:
        data = {k: z[k] for k in z.files}
    key = next(k for k in data if k.startswith("sums/mean/") and data[k].dtype.kind == "f")
    data[key] = np.full_like(data[key], np.nan)
    with open(block, "wb") as fh:
        np.savez(fh, **data)  # a valid zip with valid CRCs
    code, err = cli(["run", run, "-o", out, "-q", "--resume"], caplog)
    assert code == 1 and block.name in err and "non-finite" in err and not out.exists()


# ------------------------------------------------------------------------------------------------
# Items 5, 6: output paths checked before computing; the run file is never the output
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "exact"])
def test_output_equal_to_the_run_file_is_always_refused(tmp_path, caplog, command):
    run = write_run_file(tmp_path / "run.toml", cw_run() if command == "run" else exact_run())
    before = run.read_bytes()
    code, err = cli([command, run, "-o", run, "--overwrite", "-q"], caplog)
    assert code == 2 and "input of this run" in err
    assert run.read_bytes() == before


def _no_compute(monkeypatch):
    """Any propagation would fail the test: the checks must come first."""
    import bohmpower.driver as drv

    def boom(*a, **k):
        raise AssertionError("computed before checking the output path")

    monkeypatch.setattr(drv.ExactSolver, "run", boom)
    monkeypatch.setattr(drv.CWSolver, "run", boom)


@pytest.mark.parametrize("command", ["run", "exact"])
def test_bad_output_paths_are_refused_before_computing(tmp_path, caplog, monkeypatch, command):
    run = write_run_file(tmp_path / "run.toml", cw_run() if command == "run" else exact_run())
    _no_compute(monkeypatch)
    (tmp_path / "folder").mkdir()
    for out, words in [(tmp_path / "folder", "is a folder"),
                       (tmp_path / "missing" / "o.h5", "does not exist"),
                       (Path("/proc/bohmpower-out.h5"), "cannot write in folder")]:
        code, err = cli([command, run, "-o", out, "--overwrite", "-q"], caplog)
        assert code == 2 and words in err and "Traceback" not in err, (out, err)


@pytest.fixture(scope="module")
def exact_result(tmp_path_factory):
    d = tmp_path_factory.mktemp("exact")
    run = write_run_file(d / "run.toml", exact_run())
    assert main(["exact", str(run), "-o", str(d / "ex.h5"), "-q"]) == 0
    return d / "ex.h5"


def test_plot_paths_are_checked_before_reading_or_computing(exact_result, tmp_path, caplog,
                                                            monkeypatch):
    import bohmpower.compare as cmp
    import bohmpower.plot as plot

    def boom(*a, **k):
        raise AssertionError("computed before checking the figure path")

    monkeypatch.setattr(cmp, "compare_files", boom)
    monkeypatch.setattr(plot, "plot_result", boom)
    bad = tmp_path / "missing" / "fig.png"
    code, err = cli(["compare", exact_result, exact_result, "--plot", bad], caplog)
    assert code == 2 and "--plot" in err and "does not exist" in err
    code, err = cli(["plot", exact_result, "-o", bad], caplog)
    assert code == 2 and "does not exist" in err


# ------------------------------------------------------------------------------------------------
# Item 8: SIGTERM during start-up still ends in a checkpoint and exit 75
# ------------------------------------------------------------------------------------------------


def test_sigterm_during_start_up_exits_75_with_a_checkpoint(tmp_path):
    run = write_run_file(tmp_path / "run.toml", cw_run())
    out = tmp_path / "out.h5"
    # SIGTERM arrives while the solver is being built (where numba compiles on a cold cache).
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        import bohmpower.driver as d
        orig = d.CWSolver.__init__
        def init(self, *a, **k):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            orig(self, *a, **k)
        d.CWSolver.__init__ = init
        from bohmpower.cli import main
        sys.exit(main(["run", {str(run)!r}, "-o", {str(out)!r}, "-q"]))""")
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=ENV, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 75, (r.returncode, r.stderr)
    assert "--resume" in r.stderr and (ckpt_dir(out) / "manifest.json").exists()
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# CLI top level and the result-file reader
# ------------------------------------------------------------------------------------------------


def test_an_unexpected_exception_is_exit_1_with_a_report_file(tmp_path, caplog, monkeypatch):
    import bohmpower.cli as cli_mod

    def crash(args):
        raise RuntimeError("something nobody expected")

    monkeypatch.setitem(cli_mod.COMMANDS, "info", crash)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    code, err = cli(["info", tmp_path / "x.h5"], caplog)
    assert code == 1
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "something nobody expected" in err and "full report:" in err
    reports = list(tmp_path.glob("bohmpower-report-*.txt"))
    assert len(reports) == 1 and reports[0].name in err
    assert "Traceback" in reports[0].read_text() and "RuntimeError" in reports[0].read_text()


def test_check_into_a_closed_pipe_is_quiet(tmp_path):
    run = write_run_file(tmp_path / "run.toml", cw_run())
    p = subprocess.Popen([sys.executable, "-m", "bohmpower", "check", str(run)], cwd=REPO,
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # `| head` that has already left
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_negative_seed_names_seed(tmp_path, caplog):
    run = write_run_file(tmp_path / "run.toml", cw_run())
    for extra in ([], ["--samples", "10"]):
        code, err = cli(["run", run, "--seed", "-1", *extra, "-o", tmp_path / "o.h5"], caplog)
        assert code == 2 and "--seed" in err and "--samples" not in err, err


def test_non_utf8_run_file_in_check_is_a_clear_error(tmp_path, caplog):
    bad = tmp_path / "run.toml"
    bad.write_bytes(b'schema = "bohmpower-run/1"\ntitle = "\xff\xfe"\n[method]\n')
    code, err = cli(["check", bad], caplog)
    assert code == 2 and "UTF-8" in err and "Traceback" not in err


def test_hdf5_file_of_another_program_is_a_result_file_error(tmp_path, caplog):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(3)
    for command in (["info", other], ["plot", other, "-o", tmp_path / "f.png"],
                    ["compare", other, other]):
        code, err = cli(command, caplog)
        assert code == 2 and str(other) in err and "not a bohmpower result file" in err, err


@pytest.mark.parametrize("what", ["group", "attribute"])
def test_a_result_with_a_missing_group_or_attribute_names_the_file(exact_result, tmp_path, caplog,
                                                                   what):
    broken = tmp_path / "broken.h5"
    broken.write_bytes(exact_result.read_bytes())
    with h5py.File(broken, "r+") as f:
        if what == "group":
            del f["volumes"]
        else:
            del f.attrs["method"]
    commands = [["info", broken]]
    if what == "group":  # a figure does not need the method attribute; every reader needs volumes
        commands += [["plot", broken, "-o", tmp_path / "f.png"], ["compare", exact_result, broken]]
    for command in commands:
        code, err = cli(command, caplog)
        assert code == 2 and str(broken) in err and "Traceback" not in err, (command, err)
        assert ("volumes" if what == "group" else "method") in err, (command, err)


# ------------------------------------------------------------------------------------------------
# Item 8 of the brief: numbers outside the range where the computations are defined
# ------------------------------------------------------------------------------------------------


def _with(data, section, **values):
    data = json.loads(json.dumps(data))
    if isinstance(data[section], list):
        data[section][0].update(values)
    else:
        data[section].update(values)
    return data


OVERFLOW_CASES = [
    ("particles.mass", lambda d: _with(d, "particles", mass=1e308)),
    ("field[0].bias", lambda d: dict(d, field=[{"kind": "linear_drop", "bias": 1e308,
                                               "x_left": -5.0, "x_right": 5.0,
                                               "smoothing": 1.0}])),
    ("grid.absorber_strength", lambda d: _with(d, "grid", boundary="absorbing",
                                               absorber_width=5.0, absorber_strength=1e308)),
    ("potential[0].omega", lambda d: dict(d, potential=[{"kind": "harmonic", "center": 0.0,
                                                         "omega": 1e200}])),
    ("initial.packet[0].width", lambda d: _with(d, "initial", packet=[
        {"center": 0.0, "width": 1e-300, "wavenumber": 0.5}])),
    ("interaction.softening", lambda d: dict(
        d, particles={"count": 2, "mass": 1.0, "statistics": "distinguishable"},
        interaction={"kind": "soft_coulomb", "softening": 1e308},
        initial={"packet": [{"center": -4.0, "width": 1.5, "wavenumber": 0.6},
                            {"center": 4.0, "width": 1.5, "wavenumber": 0.6}]})),
    ("trajectories.count", lambda d: _with(d, "trajectories", count=10 ** 12)),
    ("grid.points", lambda d: _with(d, "grid", points=2 ** 62)),
    ("field[0].duration", lambda d: dict(d, field=[{"kind": "linear_drop", "bias": 0.1, "x_left": -5.0,
                                           "x_right": 5.0, "smoothing": 1.0,
                                           "time_profile": "gaussian_pulse", "t0": 0.25,
                                           "duration": 1e-3}])),
]


@pytest.mark.parametrize("key,edit", OVERFLOW_CASES, ids=[c[0] for c in OVERFLOW_CASES])
def test_overflow_values_are_refused_naming_the_key_and_the_limit(tmp_path, caplog, key, edit):
    run = write_run_file(tmp_path / "run.toml", edit(cw_run()))
    code, err = cli(["check", run], caplog)
    assert code == 2 and key in err and "Traceback" not in err, err
    assert any(w in err for w in ("at most", "at least", "limit", "<=")), err


# ------------------------------------------------------------------------------------------------
# Fuzz: near-limit numbers through the whole `check` path (model build and resolution rules, where
# the overflow tracebacks were), and random CLI argument lists
# ------------------------------------------------------------------------------------------------

NEAR_LIMITS = [1e30, -1e30, 1e-30, -1e-30, 3e29, 3e-29]


def _float_sections():
    from bohmpower.config import SECTIONS

    return sorted(s for s, specs in SECTIONS.items() if any(k.type == "float" for k in specs))


@pytest.mark.parametrize("section", _float_sections())
def test_near_limit_floats_never_end_in_a_traceback(section, tmp_path, caplog):
    """Every float key of every section at values near the limits: `check` exits 0 or 2."""
    from bohmpower.config import SECTIONS
    from tests.test_config_fuzz import section_doc

    (tmp_path / "u.dat").write_text("-40 0\n0 1\n40 0\n")
    doc, table_of = section_doc(section)
    codes = set()
    for spec in SECTIONS[section]:
        if spec.type != "float":
            continue
        for value in NEAR_LIMITS:
            variant = json.loads(json.dumps(doc))
            table_of(variant)[spec.key] = value
            path = write_run_file(tmp_path / "run.toml", variant)
            code, err = cli(["check", path], caplog)
            assert code in (0, 2), (section, spec.key, value, err)
            assert "unexpected failure" not in err, (section, spec.key, value, err)
            codes.add(code)
    assert codes  # the sweep ran


def test_random_cli_argument_lists_never_end_in_a_traceback(tmp_path, caplog):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    run = write_run_file(tmp_path / "run.toml", cw_run())
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)  # an HDF5 signature and nothing else
    words = ["check", "info", "plot", "compare", "-o", "--plot", "--alpha", "--seed", "--samples",
             "-q", "-v", "--overwrite", "--resume", "0", "-1", "nan", "1e400", str(run), str(junk),
             str(tmp_path), str(tmp_path / "none.h5"), str(tmp_path / "missing" / "f.png"), "",
             "\udcff"]

    @settings(max_examples=300, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(args=st.lists(st.sampled_from(words), min_size=1, max_size=6).filter(
        lambda a: a[0] in ("check", "info", "plot", "compare")))
    def prop(args):
        try:
            code, err = cli(args, caplog)
        except SystemExit as exc:  # argparse's usage error: exit 2 with its message
            assert exc.code in (0, 2)
            return
        assert code in (0, 2, 3), (args, err)
        assert "unexpected failure" not in err, (args, err)

    prop()


PLOT_NEEDS = ("fields/density", "fields/energy_density", "fields/power_density", "volumes",
              "volumes/right/energy", "volumes/right/window/t_start", "fields/window", "time",
              "/time as bytes")


def _objects_and_attrs(path):
    names = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: names.append(n))
        names += ["@" + k for k in f.attrs]
    return names


def test_result_readers_survive_deleted_parts_truncation_and_wrong_dtypes(exact_result, tmp_path,
                                                                          caplog):
    """Every group, dataset and root attribute deleted in turn, a truncated file, a dataset of the
    wrong dtype: info, plot and compare end in 0 or 2 (a ResultFileError naming the file)."""
    broken = tmp_path / "broken.h5"
    cases = []
    for name in _objects_and_attrs(exact_result):
        def delete(f, name=name):
            if name.startswith("@"):
                del f.attrs[name[1:]]
            else:
                del f[name]
        cases.append((f"delete {name}", delete))

    def wrong_dtype(f):
        del f["time"]
        f["time"] = np.array([b"a", b"b"])
    cases.append(("/time as bytes", wrong_dtype))
    refused = 0
    for label, edit in cases:
        broken.write_bytes(exact_result.read_bytes())
        with h5py.File(broken, "r+") as f:
            try:
                edit(f)
            except KeyError:  # already gone with its parent group
                continue
        commands = [["info", broken], ["compare", exact_result, broken]]
        if label.removeprefix("delete ") in PLOT_NEEDS:  # figures are slow: only what plot reads
            commands.append(["plot", broken, "-o", tmp_path / "f.png"])
        for command in commands:
            code, err = cli(command, caplog)
            assert code in (0, 2) and "unexpected failure" not in err, (label, command, err)
            if code == 2:
                # a ResultFileError names the file; compare may instead refuse the comparison
                # itself ("no volume names in common"), which names the volumes
                assert str(broken) in err or command[0] == "compare", (label, command, err)
                refused += 1
    data = exact_result.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    for command in (["info", broken], ["compare", exact_result, broken]):
        code, err = cli(command, caplog)
        assert code == 2 and str(broken) in err, (command, err)
    assert refused > 10


def test_a_failed_result_write_leaves_no_partial_file(tmp_path, monkeypatch, caplog):
    """A write that fails half-way (here: a dataset that cannot be written) removes its temporary
    file and leaves no result behind."""
    import bohmpower.io as bio

    run = write_run_file(tmp_path / "run.toml", exact_run())
    out = tmp_path / "out.h5"

    def failing(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bio, "_write_axes_and_model", failing)
    code, err = cli(["exact", run, "-o", out, "-q"], caplog)
    assert code != 0 and not out.exists()
    assert not list(tmp_path.glob("out.h5.tmp*")), list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------
# Item 7: a full disk is a clean exit 1 with a message; nothing partial; finished blocks usable
# ------------------------------------------------------------------------------------------------

#: The command line in a child process without mpi4py (the serial path, as when it is not
#: installed): MPI's start-up writes megabytes of shared-memory files, which a small file-size
#: limit would refuse before bohmpower starts.
_SERIAL_CLI = ("import sys; sys.modules['mpi4py'] = None; from bohmpower.cli import main; "
               "sys.exit(main(sys.argv[1:]))")


def _run_with_file_size_limit(args, limit: int, cwd: Path):
    """The CLI in a child whose files cannot grow beyond ``limit`` bytes (RLIMIT_FSIZE): every
    write past it fails in the kernel (EFBIG, like ENOSPC on a full disk). SIGXFSZ keeps its
    default action (kill) in the child: bohmpower itself must ignore it."""
    import resource

    def limit_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-c", _SERIAL_CLI, *map(str, args)], cwd=cwd, env=ENV,
                          preexec_fn=limit_files, capture_output=True, text=True, timeout=600)


def _datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset)
                     else None)
    return out


def _assert_bitwise_equal_results(a, b):
    da, db = _datasets(a), _datasets(b)
    assert sorted(da) == sorted(db)
    for name, x in da.items():
        assert np.array_equal(np.asarray(x), np.asarray(db[name]), equal_nan=True), name


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name or ".inmemory" in p.name]


@pytest.fixture(scope="module")
def straight_cw(tmp_path_factory):
    """A straight run of cw_run(): the reference result, its block and result file sizes."""
    folder = tmp_path_factory.mktemp("straight")
    run = write_run_file(folder / "run.toml", cw_run())
    out = folder / "out.h5"
    assert main(["run", str(run), "-o", str(out), "-q", "--keep-checkpoint"]) == 0
    blocks = sorted(p.stat().st_size for p in ckpt_dir(out).glob("block-*.npz"))
    return out, blocks, out.stat().st_size


def test_a_full_disk_writing_the_result_is_a_clean_exit_and_resume_finishes(
        tmp_path, caplog, straight_cw):
    """Real kernel write failures (RLIMIT_FSIZE): the result file cannot be written, the blocks
    can. Before the fix: exit -11 (segfault in h5py's close) after dozens of tracebacks."""
    ref, blocks, result_size = straight_cw
    assert blocks[-1] < result_size  # the limit below lets the blocks through, not the result
    run = write_run_file(tmp_path / "run.toml", cw_run())
    out = tmp_path / "out.h5"
    proc = _run_with_file_size_limit(["run", run, "-o", out, "-q"],
                                     (blocks[-1] + result_size) // 2, tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "unexpected failure" not in proc.stderr
    assert f"cannot write the result file {out}" in proc.stderr and "--resume" in proc.stderr
    assert not out.exists() and not _leftovers(tmp_path), list(tmp_path.rglob("*"))
    assert len(list(ckpt_dir(out).glob("block-*.npz"))) == 2
    code, err = cli(["run", run, "-o", out, "-q", "--resume"], caplog)  # space freed
    assert code == 0, err
    _assert_bitwise_equal_results(ref, out)


def test_a_full_disk_writing_a_checkpoint_is_a_clean_exit(tmp_path, caplog, straight_cw):
    """The first block file cannot be written (real EFBIG inside numpy's zip writer): exit 1 with
    the file named, no partial block file, and the run resumes once there is room."""
    ref, blocks, _ = straight_cw
    run = write_run_file(tmp_path / "run.toml", cw_run())
    out = tmp_path / "out.h5"
    proc = _run_with_file_size_limit(["run", run, "-o", out, "-q"], blocks[0] // 2, tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "unexpected failure" not in proc.stderr
    assert "cannot write the checkpoint file" in proc.stderr and "block-0-63.npz" in proc.stderr
    assert not out.exists() and not _leftovers(tmp_path), list(tmp_path.rglob("*"))
    assert (ckpt_dir(out) / "manifest.json").exists()
    code, err = cli(["run", run, "-o", out, "-q", "--resume"], caplog)
    assert code == 0, err
    _assert_bitwise_equal_results(ref, out)


def test_enospc_after_a_finished_block_keeps_it_and_resume_skips_it(tmp_path, caplog,
                                                                  monkeypatch, straight_cw):
    """ENOSPC (injected half-way through the second block file) after the first block was
    written: the first block stays and is reused, not recomputed."""
    import errno

    ref, _, _ = straight_cw
    run = write_run_file(tmp_path / "run.toml", cw_run())
    out = tmp_path / "out.h5"
    real_savez = np.savez_compressed
    calls = []

    def savez_then_full(fh, **arrays):
        calls.append(1)
        if len(calls) == 2:
            fh.write(b"PK\x03\x04 half a zip")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_savez(fh, **arrays)

    monkeypatch.setattr(ckpt_mod.np, "savez_compressed", savez_then_full)
    code, err = cli(["run", run, "-o", out, "-q"], caplog)
    assert code == 1 and "No space left on device" in err and "block-64-69.npz" in err
    assert "unexpected failure" not in err
    assert sorted(p.name for p in ckpt_dir(out).iterdir()) == ["block-0-63.npz", "manifest.json"]
    assert not _leftovers(tmp_path) and not out.exists()
    monkeypatch.setattr(ckpt_mod.np, "savez_compressed", real_savez)
    caplog.set_level("INFO")
    code, err = cli(["run", run, "-o", out, "--resume"], caplog)
    assert code == 0, err
    assert "64 of 70 samples already done" in err
    _assert_bitwise_equal_results(ref, out)


def test_enospc_writing_an_exact_result_is_a_clean_exit(tmp_path, caplog, monkeypatch):
    import errno

    import bohmpower.io as bio

    run = write_run_file(tmp_path / "run.toml", exact_run())
    out = tmp_path / "out.h5"
    out.write_bytes(b"an earlier result")

    def fsync_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bio.os, "fsync", fsync_full)
    code, err = cli(["exact", run, "-o", out, "-q", "--overwrite"], caplog)
    assert code == 1 and f"cannot write the result file {out}" in err, err
    assert "unexpected failure" not in err
    assert out.read_bytes() == b"an earlier result" and not _leftovers(tmp_path)


def test_temporaries_left_by_a_killed_process_are_removed_when_the_lock_is_taken(tmp_path,
                                                                                caplog):
    """An MPI rank aborted while writing leaves ``*.tmp<pid>``; the next run (holding the lock,
    so no live run writes there) removes those of dead processes."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    run = write_run_file(tmp_path / "run.toml", cw_run())
    out = tmp_path / "out.h5"
    ckpt_dir(out).mkdir()
    stale = [ckpt_dir(out) / f"block-0-63.npz.tmp{dead}", tmp_path / f"out.h5.tmp{dead}"]
    for p in stale:
        p.write_bytes(b"half")
    code, err = cli(["run", run, "-o", out, "-q"], caplog)
    assert code == 0, err
    assert not any(p.exists() for p in stale)


# ------------------------------------------------------------------------------------------------
# Item 9: the CW engine stops where the exact engine stops as unresolved
# ------------------------------------------------------------------------------------------------

#: A packet falling into an 8 hartree deep dip: the run-file rules pass (they bound the drives'
#: and the interaction's energy, not the depth of U0), but at the bottom k = 4 > pi/dx = 3.35.
_DIP = dict(potential=[{"kind": "gaussian", "center": 0.0, "width": 3.0, "height": -8.0}],
            initial={"packet": [{"center": -6.0, "width": 2.0, "wavenumber": 0.6}]},
            time={"dt": 0.05, "t_end": 4.0, "save_every": 5})


def test_a_cw_run_that_exact_stops_as_unresolved_stops_too(tmp_path, caplog):
    """Before: exact stopped at step 10, `run` ran to the end with exit 0."""
    ex = write_run_file(tmp_path / "ex.toml", exact_run(**_DIP))
    cw = write_run_file(tmp_path / "cw.toml", cw_run(**_DIP))
    code, err = cli(["exact", ex, "-o", tmp_path / "ex.h5", "-q"], caplog)
    assert code == 1 and "top 10% of the grid's wavenumbers" in err, err
    out = tmp_path / "cw.h5"
    code, err = cli(["run", cw, "-o", out, "-q"], caplog)
    assert code == 1, err
    assert "top 10% of the grid's wavenumbers" in err and "increase grid.points" in err
    assert "numerical failure at step 10 (t = 0.5 " in err  # step and time, as exact's
    assert "sample 0, electron 0:" in err
    assert not out.exists()


def test_the_cw_resolution_check_is_the_exact_engines():
    """Same tolerance, same definition of the top 10 % (odd and even n_x), and a resolved state
    passes: the per-CW fractions equal the exact engine's on one-electron wavefunctions."""
    from bohmpower import driver
    from bohmpower.cw import engine

    assert engine.SPECTRAL_EDGE_TOLERANCE == driver.SPECTRAL_EDGE_TOLERANCE
    rng = np.random.default_rng(3)
    for n in (64, 65, 320):
        psi = rng.normal(size=(3, 2, n)) + 1j * rng.normal(size=(3, 2, n))
        got = engine.spectral_edge_weights(psi)
        want = [[driver.spectral_edge_weight(psi[b, c]) for c in range(2)] for b in range(3)]
        np.testing.assert_allclose(got, want, rtol=1e-12)
    x = np.linspace(-30, 30, 64, endpoint=False)
    smooth = np.exp(-x ** 2 / 8 + 0.6j * x)
    assert engine.spectral_edge_weights(smooth) < engine.SPECTRAL_EDGE_TOLERANCE
    bad = np.array([np.nan, 1.0, 0.0, 0.0] + [0.0] * 60, dtype=complex)
    assert np.isnan(engine.spectral_edge_weights(bad)) and engine.spectral_edge_weights(0 * x) == 0


def test_the_cw_resolution_check_runs_every_k_steps(tmp_path):
    """Every ``spectral_every`` steps: with 10 the dip is caught at step 10; switched off it is
    not caught at all within the run (the norm and NaN checks pass: the state is finite)."""
    from bohmpower.cw.engine import CWEnsemble, SampleFailure
    from bohmpower.model import build_model
    from bohmpower.model.sampling import sample_configurations
    from tests.conftest import make_config

    model, _ = build_model(make_config(tmp_path, **cw_run(**_DIP)), command="run")
    X0 = sample_configurations("slater", model.orbitals, model.grid.x, 1, np.arange(4))
    ens = CWEnsemble(model, X0, exchange=False, spectral_every=10)
    with pytest.raises(SampleFailure, match="top 10%") as info:
        for _ in range(80):
            ens.step()
    assert info.value.step == 10
    ens = CWEnsemble(model, X0, exchange=False, spectral_every=0)
    for _ in range(20):
        ens.step()
    assert ens.max_spectral_edge == 0.0 and not ens.failed


# ------------------------------------------------------------------------------------------------
# Item 10: rank 0 holds a few blocks, whatever the number of samples
# ------------------------------------------------------------------------------------------------


def _count_live_blocks(monkeypatch):
    """Track every BlockResult the run makes or loads; returns (record, peak) where peak[0] is
    the largest number alive at once, sampled whenever a new one appears."""
    import gc
    import weakref

    from bohmpower import driver

    refs, peak = [], [0]

    def note(result):
        refs.append(weakref.ref(result))
        gc.collect()
        peak[0] = max(peak[0], sum(r() is not None for r in refs))
        return result

    real_block, real_load = driver.CWSolver.run_block, ckpt_mod.Checkpoint.load_block
    monkeypatch.setattr(driver.CWSolver, "run_block", lambda self, ids: note(real_block(self, ids)))
    monkeypatch.setattr(ckpt_mod.Checkpoint, "load_block",
                        lambda self, path: note(real_load(self, path)))
    return peak


def test_rank_0_holds_a_few_blocks_not_all_of_them(tmp_path, monkeypatch):
    """640 samples = 10 blocks, computed, then resumed from disk with 2 blocks missing. Before:
    every block stayed in memory until the end (10 alive at once); now each is merged and dropped
    (one being computed or loaded, one just merged), and the result is the same to the bit."""
    from bohmpower.checkpoint import Checkpoint, run_identity
    from bohmpower.driver import CWSolver
    from tests.conftest import make_config

    config = make_config(tmp_path, **cw_run(samples=640, time={"dt": 0.05, "t_end": 0.2,
                                                                "save_every": 2}))
    peak = _count_live_blocks(monkeypatch)
    ckpt = Checkpoint(tmp_path / "out.h5", run_identity(config))
    straight = CWSolver(config).run(checkpoint=ckpt)
    assert peak[0] <= 2, peak
    for name in ("block-128-191.npz", "block-448-511.npz"):
        (ckpt.dir / name).unlink()
    peak[0] = 0
    resumed = CWSolver(config).run(checkpoint=ckpt, resume=True)
    assert peak[0] <= 2, peak
    a, b = dict(_leaves(straight.estimates)), dict(_leaves(resumed.estimates))
    assert sorted(a) == sorted(b) and any(k.startswith("blocks/") for k in a)
    for k in a:
        assert np.array_equal(np.asarray(a[k]), np.asarray(b[k]), equal_nan=True), k


def _leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}/")
        else:
            yield f"{prefix}{k}", v


# ------------------------------------------------------------------------------------------------
# Fuzz: generated run files and argument lists through the command line, zero tracebacks
# (scripts/fuzz_reliability.py runs 10,000 and 1,000; the suite keeps small counts)
# ------------------------------------------------------------------------------------------------


def _fuzz_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("fuzz_reliability",
                                                  REPO / "scripts" / "fuzz_reliability.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fuzz_reliability", mod)  # dataclasses look their module up there
    spec.loader.exec_module(sys.modules["fuzz_reliability"])
    return sys.modules["fuzz_reliability"]


def test_generated_run_files_never_end_in_a_traceback(tmp_path, caplog):
    """Mutated files written as TOML, byte-mutated text (non-UTF-8 included) and floats near the
    limits, each through `bohmpower check`: exit 0 or 2, never the unexpected-failure branch."""
    fuzz = _fuzz_module()
    caplog.set_level("WARNING")
    report = fuzz.fuzz_run_files(80, tmp_path)
    assert report.n >= 80 and not report.failures, report.failures[:3]
    assert report.codes[0] and report.codes[2]  # both outcomes are reached


def test_generated_argument_lists_never_end_in_a_traceback(tmp_path, caplog, monkeypatch):
    fuzz = _fuzz_module()
    monkeypatch.chdir(tmp_path)
    caplog.set_level("WARNING")
    report = fuzz.fuzz_cli(25, tmp_path)
    assert report.n >= 25 and not report.failures, report.failures[:3]


def test_the_fuzz_harness_reports_a_traceback(tmp_path, monkeypatch):
    """The harness can fail: an exception escaping main, or the unexpected-failure branch, is
    recorded as a traceback."""
    fuzz = _fuzz_module()
    report = fuzz.Report()
    monkeypatch.setattr(fuzz, "main", lambda args: (_ for _ in ()).throw(KeyError("x")))
    fuzz._call(["check", "x"], report)
    assert report.failures and "KeyError" in report.failures[0][1]
    import bohmpower.cli as bcli

    monkeypatch.setattr(fuzz, "main", bcli.main)
    monkeypatch.setitem(bcli.COMMANDS, "check", lambda args: {}["boom"])
    run = write_run_file(tmp_path / "run.toml", exact_run())
    fuzz._call(["check", str(run)], report)
    assert len(report.failures) == 2 and "unexpected failure" in report.failures[1][1]


@pytest.mark.parametrize("command", ["run", "exact"])
@pytest.mark.parametrize("arg", ["", "folder"])
def test_a_run_file_argument_naming_no_file_is_a_clear_error(tmp_path, caplog, monkeypatch,
                                                             command, arg):
    """Found by scripts/fuzz_reliability.py: `bohmpower run ""` raised ValueError while deriving
    the default output name (exit 1 with a report)."""
    monkeypatch.chdir(tmp_path)
    if arg:
        (tmp_path / arg).mkdir()
    code, err = cli([command, arg], caplog)
    assert code == 2 and "not a run file" in err and "unexpected failure" not in err, err
