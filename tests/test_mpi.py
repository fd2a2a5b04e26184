"""MPI runs under `mpiexec -n 2`, checkpoints and resume (SPEC.md "Reproducibility").

These are ordinary tests that start the command line themselves, serially and under the mpiexec
of the `mpich` wheel, and compare the result files dataset by dataset: equal to 1e-10 of each
dataset's largest value (root attributes such as ranks, created and wall_time excepted).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import REPO, run_dict, write_run_file

MPIEXEC = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")
ENV = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def cw_run(samples=150, seed=5, bias=0.2, t_end=2.0):
    return run_dict(
        particles={"count": 2, "mass": 1.0, "statistics": "fermion"},
        grid={"x_min": -30.0, "x_max": 30.0, "points": 128, "boundary": "periodic"},
        time={"dt": 0.05, "t_end": t_end, "save_every": 10},
        interaction={"kind": "soft_coulomb", "softening": 1.0},
        field=[{"kind": "linear_drop", "bias": bias, "x_left": -5.0, "x_right": 5.0,
                "smoothing": 1.0}],
        initial={"packet": [{"center": -4.0, "width": 1.5, "wavenumber": 0.6},
                            {"center": 3.0, "width": 1.5, "wavenumber": -0.3}]},
        volume=[{"name": "dev", "x_min": -3.0, "x_max": 3.0},
                {"name": "soft", "x_min": -8.0, "x_max": 0.0, "smoothing": 1.0}],
        trajectories={"count": samples, "seed": seed, "store": 3},
        method={"exchange": False},
    )


def bohmpower(args, ranks=1, wait=True, **kw):
    cmd = [sys.executable, "-m", "bohmpower", *map(str, args)]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kw)
    return subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600,
                          **kw)


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset)
                     else None)
    return out


def assert_same_results(a, b):
    da, db = datasets(a), datasets(b)
    assert sorted(da) == sorted(db)
    for name, x in da.items():
        y = db[name]
        if np.issubdtype(np.asarray(x).dtype, np.number):
            scale = np.nanmax(np.abs(x)) if np.size(x) and np.any(np.isfinite(x)) else 0.0
            np.testing.assert_allclose(y, x, rtol=0, atol=1e-10 * scale + 1e-300,
                                       equal_nan=True, err_msg=name)
        else:
            assert np.array_equal(x, y), name


def wait_for_block_file(ckpt: Path, proc, timeout=300):
    start = time.time()
    while time.time() - start < timeout:
        if ckpt.exists() and any(ckpt.glob("block-*.npz")):
            return
        if proc.poll() is not None:
            raise AssertionError("run ended before writing a checkpoint: " + proc.stderr.read())
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted serial run every other run must reproduce."""
    d = tmp_path_factory.mktemp("straight")
    path = write_run_file(d / "run.toml", cw_run())
    r = bohmpower(["run", path, "-o", d / "serial.h5", "-q", "--keep-checkpoint"])
    assert r.returncode == 0, r.stderr
    return path, d / "serial.h5"


@pytest.mark.mpi
def test_two_ranks_equal_one_rank_with_an_uneven_split(straight, tmp_path):
    """150 samples = blocks of 64, 64, 22: rank 0 runs two blocks, rank 1 one."""
    path, serial = straight
    out = tmp_path / "mpi.h5"
    r = bohmpower(["run", path, "-o", out, "-q"], ranks=2)
    assert r.returncode == 0, r.stderr
    assert_same_results(serial, out)
    with h5py.File(out, "r") as f:
        assert f.attrs["ranks"] == 2


@pytest.mark.mpi
def test_more_ranks_than_blocks(tmp_path):
    """40 samples make one block: the second rank has nothing to do, which is a normal case."""
    path = write_run_file(tmp_path / "run.toml", cw_run(samples=40))
    r1 = bohmpower(["run", path, "-o", tmp_path / "one.h5", "-q"])
    r2 = bohmpower(["run", path, "-o", tmp_path / "two.h5", "-q"], ranks=2)
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    assert_same_results(tmp_path / "one.h5", tmp_path / "two.h5")


@pytest.fixture(scope="module")
def long_straight(tmp_path_factory):
    """A run of 10 blocks (5 rounds on 2 ranks), long enough to be interrupted mid-way."""
    d = tmp_path_factory.mktemp("long")
    path = write_run_file(d / "run.toml", cw_run(samples=640, t_end=4.0))
    r = bohmpower(["run", path, "-o", d / "serial.h5", "-q"])
    assert r.returncode == 0, r.stderr
    return path, d / "serial.h5"


@pytest.mark.mpi
def test_sigterm_stops_cleanly_and_resume_equals_the_straight_run(long_straight, tmp_path):
    path, serial = long_straight
    out = tmp_path / "stopped.h5"
    proc = bohmpower(["run", path, "-o", out], ranks=2, wait=False)
    wait_for_block_file(Path(str(out) + ".checkpoint"), proc)
    proc.send_signal(signal.SIGTERM)  # mpiexec forwards it to both ranks
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 75, err
    assert "--resume" in err and not out.exists()
    r = bohmpower(["run", path, "-o", out, "--resume", "-q"])
    assert r.returncode == 0, r.stderr
    assert_same_results(serial, out)


@pytest.mark.mpi
def test_a_rank_killed_mid_run_loses_nothing_after_resume(long_straight, tmp_path):
    path, serial = long_straight
    out = tmp_path / "killed.h5"
    proc = bohmpower(["run", path, "-o", out], ranks=2, wait=False)
    wait_for_block_file(Path(str(out) + ".checkpoint"), proc)
    children = subprocess.run(["pgrep", "-f", f"bohmpower run {path}"], capture_output=True,
                              text=True).stdout.split()
    victim = max(int(p) for p in children if int(p) != proc.pid)
    os.kill(victim, signal.SIGKILL)
    proc.communicate(timeout=300)
    assert proc.returncode != 0 and not out.exists()
    r = bohmpower(["run", path, "-o", out, "--resume", "-q"], ranks=2)
    assert r.returncode == 0, r.stderr
    assert_same_results(serial, out)


def test_resume_with_more_samples_extends_a_finished_run(tmp_path):
    """--resume --samples M2 on a finished run equals a straight run of M2 samples."""
    path = write_run_file(tmp_path / "run.toml", cw_run(samples=70))
    assert bohmpower(["run", path, "-o", tmp_path / "a.h5", "-q", "--keep-checkpoint"]
                     ).returncode == 0
    r = bohmpower(["run", path, "-o", tmp_path / "a.h5", "-q", "--resume", "--samples", "150"])
    assert r.returncode == 2 and "--overwrite" in r.stderr  # a finished result is never replaced
    r = bohmpower(["run", path, "-o", tmp_path / "a.h5", "-q", "--resume", "--samples", "150",
                   "--overwrite"])
    assert r.returncode == 0, r.stderr
    path150 = write_run_file(tmp_path / "run150.toml", cw_run(samples=150))
    assert bohmpower(["run", path150, "-o", tmp_path / "b.h5", "-q"]).returncode == 0
    assert_same_results(tmp_path / "b.h5", tmp_path / "a.h5")


def test_foreign_or_corrupted_checkpoint_is_refused_and_kept(tmp_path):
    path = write_run_file(tmp_path / "run.toml", cw_run(samples=70))
    out = tmp_path / "out.h5"
    assert bohmpower(["run", path, "-o", out, "-q", "--keep-checkpoint"]).returncode == 0
    ckpt = Path(str(out) + ".checkpoint")
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    out.unlink()
    other = write_run_file(tmp_path / "other.toml", cw_run(samples=70, bias=0.3))
    r = bohmpower(["run", other, "-o", out, "--resume", "-q"])
    assert r.returncode == 2 and "different run file" in r.stderr and "Traceback" not in r.stderr
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before
    block = sorted(ckpt.glob("block-*.npz"))[0]
    block.write_bytes(b"garbage")
    r = bohmpower(["run", path, "-o", out, "--resume", "-q"])
    assert r.returncode == 2 and "corrupted" in r.stderr and block.name in r.stderr
    assert block.read_bytes() == b"garbage" and not out.exists()


def assert_bitwise_equal_results(a, b):
    """Every dataset equal to the bit (NaN where NaN): rank 0 merges the blocks as they arrive,
    in id order, so the arithmetic is exactly a serial run's (issue 11 item 10)."""
    da, db = datasets(a), datasets(b)
    assert sorted(da) == sorted(db)
    for name, x in da.items():
        x, y = np.asarray(x), np.asarray(db[name])
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype.kind in "fc":
            assert x.tobytes() == y.tobytes(), name  # every bit, NaN payloads included
        else:
            assert np.array_equal(x, y), name


@pytest.mark.mpi
def test_two_ranks_equal_one_rank_to_the_bit(straight, tmp_path):
    """Blocks merged as they arrive (rank 0 receives them one at a time): bitwise the serial run."""
    path, serial = straight
    out = tmp_path / "mpi.h5"
    r = bohmpower(["run", path, "-o", out, "-q"], ranks=2)
    assert r.returncode == 0, r.stderr
    assert_bitwise_equal_results(serial, out)


@pytest.mark.mpi
def test_resume_interleaving_disk_and_received_blocks_equals_one_rank_to_the_bit(straight,
                                                                                tmp_path):
    """Only the middle block is on disk: rank 0 merges its own block 0-63, then 64-127 read
    from the checkpoint, then 128-149 received from rank 1, in that order."""
    path, serial = straight
    out = tmp_path / "resumed.h5"
    ckpt = Path(str(out) + ".checkpoint")
    shutil.copytree(Path(str(serial) + ".checkpoint"), ckpt)
    for name in ("block-0-63.npz", "block-128-149.npz"):
        (ckpt / name).unlink()
    r = bohmpower(["run", path, "-o", out, "-q", "--resume"], ranks=2)
    assert r.returncode == 0, r.stderr
    assert_bitwise_equal_results(serial, out)


@pytest.mark.mpi
def test_an_open_run_stopped_on_two_ranks_resumes_and_equals_the_serial_run(tmp_path):
    """An open-system run ([reservoirs]) checkpoints each finished block of worlds: 130 worlds make
    blocks of 64, 64 and 2 (two rounds on two ranks); --max-wall-time stops it after the first
    round (exit 75, two block files), --resume on two ranks runs only the last block, and the
    result equals the serial run's; the checkpoint is removed after the result is written."""
    import copy

    from tests.test_devices_open import OPEN

    d = copy.deepcopy(OPEN)
    d["trajectories"]["count"] = 130
    d["time"]["t_end"] = 2100.0
    d["steady_state"]["warm_up"] = 980.0
    path = write_run_file(tmp_path / "open.toml", d)
    r = bohmpower(["run", path, "-o", tmp_path / "serial.h5", "-q"])
    assert r.returncode == 0, r.stderr
    out = tmp_path / "stopped.h5"
    ckpt = Path(str(out) + ".checkpoint")
    r = bohmpower(["run", path, "-o", out, "-q", "--max-wall-time", "0.2"], ranks=2)
    assert r.returncode == 75 and "--resume" in r.stderr, r.stderr
    assert sorted(p.name for p in ckpt.glob("open-*.npz")) == ["open-0-63.npz", "open-64-127.npz"]
    assert not out.exists()
    r = bohmpower(["run", path, "-o", out, "--resume"], ranks=2)
    assert r.returncode == 0, r.stderr
    assert "128 of 130 worlds already done" in r.stderr
    assert_same_results(tmp_path / "serial.h5", out)
    assert not ckpt.exists()


@pytest.mark.mpi
def test_a_sweep_spreads_its_points_over_the_ranks_and_equals_the_serial_sweep(tmp_path):
    """Three points on two ranks: rank 0 runs the first and the third point, rank 1 the second
    (groups of ranks, one per point at most); every point's file equals the serial sweep's."""
    import copy

    from tests.test_devices_open import OPEN

    d = copy.deepcopy(OPEN)
    d["trajectories"]["count"] = 2
    d["time"]["t_end"] = 2100.0
    d["steady_state"]["warm_up"] = 980.0
    path = write_run_file(tmp_path / "dev.toml", d)
    for ranks, out in ((1, "serial"), (2, "mpi")):
        r = bohmpower(["sweep", path, "--bias", "0.01:0.03:3", "-o", tmp_path / out], ranks=ranks)
        assert r.returncode == 0, r.stderr
    assert "3 points on 2 groups of ranks" in r.stdout
    names = sorted(p.name for p in (tmp_path / "serial").glob("dev.bias*.h5"))
    assert len(names) == 3
    assert sorted(p.name for p in (tmp_path / "mpi").glob("dev.bias*.h5")) == names
    for name in names:
        assert_same_results(tmp_path / "serial" / name, tmp_path / "mpi" / name)
    assert r.stdout.count("(run)") == 3


@pytest.mark.mpi
def test_a_point_refused_on_one_rank_of_a_sweep_is_a_clean_error_on_every_rank(tmp_path):
    """warm_up = "auto" leaves too short an average at the low bias only (its slow electrons take
    longer): the rank of that point refuses it while the other rank runs its own point; the sweep
    ends with exit 2 and one message naming the bias, instead of waiting forever, and keeps the
    finished point."""
    import copy

    from tests.test_devices_open import OPEN

    d = copy.deepcopy(OPEN)
    d["trajectories"]["count"] = 2
    d["steady_state"]["warm_up"] = "auto"
    path = write_run_file(tmp_path / "dev.toml", d)
    r = bohmpower(["sweep", path, "--bias", "0.01:0.03:2", "-o", tmp_path / "iv"], ranks=2)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("error: steady_state.warm_up: at bias 0.01:") == 1, r.stderr
    assert "lengthen time.t_end" in r.stderr
    assert [p.name for p in (tmp_path / "iv").glob("*.h5")] == ["dev.bias0.03.h5"]
