"""Checkpoints of conditional-wavefunction runs: ``OUT.h5.checkpoint/`` beside the output.

The unit is the finished block of sample ids (``power.recorder``): each is written as its own file
``block-<first>-<last>.npz`` (compressed, lossless; temporary name, then rename, so a crash never
leaves a half-written file) holding what a merge needs and nothing else (the block's sums, its
stored trajectories and its crossing count), next to ``manifest.json`` which identifies the run (a
hash of the resolved run file without its sample count, the seed, the block size). A resumed run skips the blocks on disk and computes
the rest, and since blocks merge in id order the result equals an uninterrupted run's, whatever the
number of ranks before and after. A checkpoint written for another run file is refused, and nothing
in it is touched.

The run identity covers everything that changes the numbers: the resolved run file (without its
sample count), the contents of every table file it names (a hash, since the run file holds only the
path), the seed, the block size and ``NUMERICS_VERSION``. Every block file carries the identity's
digest too, so a block of another run (left behind, copied in, or next to a lost manifest) is never
merged: it is refused, naming the file. Block values that are not finite are refused the same way.

The folder is locked (``fcntl.flock`` on the file ``OUT.h5.checkpoint.lock`` beside it, held by rank 0
for the whole run and released by the OS on exit or kill): a second run on the same output is refused
at once, naming the holder's pid. The lock file lives outside the folder so that taking the lock
changes nothing inside a checkpoint, and it is never deleted (deleting a lock file races a run that
is opening it).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import pickle
import re
import types
import zipfile
from pathlib import Path

import numpy as np

from bohmpower.errors import (BadBlockError, BohmpowerError, ConfigError, StorageError,
                              is_out_of_space)
from bohmpower.power.estimators import BlockSums
from bohmpower.power.recorder import BLOCK_SIZE, BlockResult

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
VERSION = 2
#: Bumped whenever a change of the numerics changes the results of a run file: a checkpoint written
#: by a package with another value is not resumed (its blocks would mix two sets of numbers).
NUMERICS_VERSION = 1
_IDENTITY_KEY = "identity/digest"
_BLOCK_RE = re.compile(r"^block-(\d+)-(\d+)\.npz$")
#: Blocks of worlds of an open-system run (``devices.engine``): their own name, their own contents.
_OPEN_RE = re.compile(r"^open-(\d+)-(\d+)\.npz$")
#: Default seconds between saves of an unfinished interacting-scheme unit (``UnitState``) when
#: ``--checkpoint-interval`` is not given; it is also saved whenever the run is stopped.
UNIT_STATE_INTERVAL = 600.0


def checkpoint_path(output: Path) -> Path:
    return Path(str(output) + ".checkpoint")


def run_identity(config) -> dict:
    """What must match for a checkpoint to be reused: everything but the sample count."""
    text = config.to_toml()
    lines, section = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        if section == "[trajectories]" and re.match(r"^count\s*=", stripped):
            continue
        lines.append(line)
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return {"version": VERSION, "numerics_version": NUMERICS_VERSION,
            "config_hash_without_count": digest, "input_files": _input_file_hashes(config),
            "seed": int(config.trajectories.seed), "block_size": BLOCK_SIZE}


def _input_file_hashes(config) -> dict:
    """sha256 of the contents of every file the run file names (table potentials), by path."""
    out = {}
    for i, piece in enumerate(config.potential):
        path = getattr(piece, "file", None)
        if path is None:
            continue
        try:
            out[f"potential[{i}].file"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError as exc:
            raise ConfigError(f"potential[{i}].file", f"{path}: cannot be read "
                              f"({exc.strerror or exc})") from None
    return out


def identity_digest(identity: dict) -> str:
    """One string standing for a run identity (stored in each block file)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def check_finite_block(result: BlockResult, where: str) -> None:
    """Refuse a block whose sums are not all finite (a NaN would poison every merged value)."""
    for key, val in result.sums.as_dict().items():
        arr = np.asarray(val)
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            raise BadBlockError(
                f"{where} holds non-finite values in '{key}' (samples "
                f"{result.sums.first_id}-{result.sums.last_id}); not merged. Refine time.dt / "
                "grid.points, or remove that block file and resume")


def _atomic_write(path: Path, write) -> None:
    """``write(tmp)`` then rename to ``path``; the temporary file never stays behind. A full disk
    (or quota, or file-size limit) is a StorageError naming the file: the blocks already in the
    folder are complete files and stay usable by ``--resume``."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if is_out_of_space(exc):
            raise StorageError(
                f"cannot write the checkpoint file {path}: {exc.strerror or exc}; nothing partial "
                f"was left, and the finished blocks in {path.parent} are kept. Free space (or "
                "raise the quota), then rerun the same command with --resume") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(folder: Path, pattern: str) -> list[Path]:
    """Remove the temporary files ``pattern`` (e.g. ``*.tmp*``) in ``folder`` that a killed process
    left (an MPI rank aborted mid-write). Call it only with the checkpoint lock held, so no live
    run writes them; a name whose pid is a live process is kept all the same."""
    removed = []
    for tmp in sorted(folder.glob(pattern)) if folder.is_dir() else []:
        m = re.search(r"\.tmp(\d+)$", tmp.name)
        if m is None or not tmp.is_file() or _pid_alive(int(m.group(1))):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours is never in progress while the run is starting
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def resume_on_root(checkpoint, resume: bool, comm, n_samples: int, finished, unit: str):
    """Rank 0 checks the checkpoint a run resumes from (``finished()`` -> (done, count): what it
    reads back, keyed, and how many samples that is) and writes its manifest; a refusal stops every
    rank alike, or the others would wait for rank 0 forever. Returns (done on rank 0, {} elsewhere;
    its sorted keys on every rank)."""
    done, refused = {}, None
    if checkpoint is not None and comm.rank == 0:
        try:
            if resume and checkpoint.exists():
                checkpoint.check()
                done, count = finished()
                log.info("resuming: %d of %d %s already done", count, n_samples, unit)
            checkpoint.write_manifest(n_samples)
        except BohmpowerError as exc:
            refused = exc
    why = comm.bcast(None if refused is None else (refused.exit_code, str(refused)), root=0)
    if refused is not None:
        raise refused
    if why is not None:
        raise (ConfigError("", why[1]) if why[0] == 2 else BohmpowerError(why[1]))
    return done, comm.bcast(sorted(done), root=0)


class Checkpoint:
    """The checkpoint folder of one output file (see the module docstring)."""

    def __init__(self, output: Path, identity: dict):
        self.dir = checkpoint_path(Path(output))
        self.identity = identity
        self.digest = identity_digest(identity)
        self.lock_path = Path(str(self.dir) + ".lock")
        self._lock_fd: int | None = None

    def exists(self) -> bool:
        return (self.dir / MANIFEST).exists()

    def block_files(self) -> list[Path]:
        """The block files in the folder (whatever run wrote them)."""
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.glob("block-*.npz") if _BLOCK_RE.match(p.name))

    def orphan_problem(self) -> str | None:
        """Why blocks without a manifest cannot be used, or None when that is not the case."""
        if self.exists() or not self.block_files():
            return None
        return (f"the checkpoint folder {self.dir} holds {len(self.block_files())} block file(s) "
                f"but no {MANIFEST}: nothing says which run wrote them, so they are not used. "
                "Move the folder away (or pass --overwrite without --resume to delete it)")

    def lock(self) -> None:
        """Take the folder's OS lock; a run holding it already is refused with its pid."""
        path = self.lock_path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise ConfigError("--output", f"another bohmpower run (pid {holder}) is using "
                              f"{self.dir}; wait for it to end, or choose another -o") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def write_manifest(self, n_samples: int) -> None:
        """Create the folder and its manifest (rank 0)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        data = dict(self.identity, n_samples=int(n_samples))

        def write(tmp):
            tmp.write_text(json.dumps(data, indent=1))

        _atomic_write(self.dir / MANIFEST, write)

    def check(self) -> dict:
        """Read the manifest and refuse a checkpoint of another run; returns the manifest."""
        path = self.dir / MANIFEST
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError("--resume", f"{path} is unreadable ({exc}); the checkpoint cannot be "
                              "trusted: move the folder away to start afresh") from None
        for key, val in self.identity.items():
            if data.get(key) != val:
                what = {"version": "has another format version",
                        "numerics_version": "was written by a bohmpower whose numerics give "
                                            "other results",
                        "input_files": "was written with other contents of a table file the "
                                       "run file names"}.get(
                    key, "was written for a different run file (or a different seed)")
                raise ConfigError(
                    "--resume", f"the checkpoint {self.dir} {what} ({key}: {data.get(key)!r} vs "
                    f"{val!r}); resume with the run file that wrote it, or choose another output")
        return data

    def save_block(self, result: BlockResult) -> None:
        """Write one finished block atomically."""
        arrays = {f"sums/{k}": np.asarray(v) for k, v in result.sums.as_dict().items()}
        for sid, d in result.stored.items():
            for name, arr in d.items():
                arrays[f"stored/{sid}/{name}"] = arr
        arrays["crossed"] = np.asarray(result.crossed)
        self.save_arrays(f"block-{result.sums.first_id}-{result.sums.last_id}.npz", arrays)

    def save_arrays(self, name: str, arrays: dict) -> None:
        """Write the arrays to ``name`` in the folder atomically, stamped with the run identity."""
        self.dir.mkdir(parents=True, exist_ok=True)
        data = dict(arrays)
        data[_IDENTITY_KEY] = np.asarray(self.digest)

        def write(tmp):
            # compressed (zip deflate, lossless: a resumed run still equals a straight run to the
            # bit); most of a block is the profiles' mean and M2, zero outside the kernels' reach
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **data)

        _atomic_write(self.dir / name, write)

    def load_arrays(self, path: Path) -> dict:
        """The arrays of one file of the folder, checked: readable and written by this run."""
        try:
            with np.load(path) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ConfigError("--resume", f"{path} is corrupted ({exc}); remove that file and "
                              "resume again (its samples are recomputed)") from None
        digest = str(data.pop(_IDENTITY_KEY)) if _IDENTITY_KEY in data else None
        if digest != self.digest:
            raise ConfigError("--resume", f"{path} was written by another run (its run "
                              "identity differs from this run's), so it is not merged; "
                              "remove that file and resume again (its samples are "
                              "recomputed), or choose another output")
        return data

    def open_block_files(self) -> dict[tuple[int, int], Path]:
        """(first world id, last world id) -> file of every finished block of an open run."""
        if not self.dir.is_dir():
            return {}
        out = {}
        for p in sorted(self.dir.glob("open-*.npz")):
            m = _OPEN_RE.match(p.name)
            if m:
                out[(int(m.group(1)), int(m.group(2)))] = p
        return out

    def load_blocks(self) -> dict[int, BlockResult]:
        """Every finished block on disk, keyed by first sample id; a corrupted file is refused."""
        out = {}
        for path in self.block_files():
            result = self.load_block(path)
            out[result.sums.first_id] = result
        return out

    def finished_blocks(self) -> dict[tuple[int, int], tuple[Path, int]]:
        """(first id, last id) -> (file, samples) of every finished block on disk, each read and
        checked as :meth:`load_block` does (a file of another run, corrupted or not finite is
        refused) but not kept: a resumed run loads each again when its turn to be merged comes,
        so memory does not grow with the number of blocks."""
        out = {}
        for path in self.block_files():
            sums = self.load_block(path).sums
            out[(sums.first_id, sums.last_id)] = (path, sums.n_samples)
        return out

    def load_block(self, path: Path) -> BlockResult:
        """One block file, checked: written by this run, readable, finite."""
        data = self.load_arrays(path)
        sums = BlockSums.from_dict({k[5:]: _scalar(v) for k, v in data.items()
                                    if k.startswith("sums/")})
        stored: dict = {}
        for k, v in data.items():
            if k.startswith("stored/"):
                _, sid, name = k.split("/", 2)
                stored.setdefault(int(sid), {})[name] = v
        result = BlockResult(sums, stored, int(data["crossed"]))
        check_finite_block(result, f"checkpoint block {path}")
        return result

    def unit_state(self, rank: int, size: int, id_ranges) -> UnitState:
        """Where the interacting scheme keeps the state of an unfinished unit of rank ``rank``."""
        return UnitState(self, rank, size, id_ranges)

    def size(self) -> int:
        """Bytes of the files in the folder (0 without a folder)."""
        if not self.dir.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file())

    def remove(self) -> None:
        """Delete the checkpoint once the final result file is written."""
        if not self.dir.exists():
            return
        for path in self.dir.iterdir():
            path.unlink()
        self.dir.rmdir()


def _scalar(v: np.ndarray):
    return v.item() if v.ndim == 0 else v


#: Values pickled as they are; every other object reachable from the model is a reference.
_PLAIN = (bool, int, float, complex, str, bytes, type(None), np.ndarray, np.generic)


def _shared_parts(root, depth: int = 8) -> dict[int, tuple[str, object]]:
    """id -> (path, object) of every non-plain object reachable from ``root`` (the model: its drives, their
    time profiles (closures), its tables). They are not unit state -- the resumed run rebuilds
    them from the same run file -- so a pickle refers to them by path (``persistent_id``)."""
    out: dict[int, tuple[str, object]] = {}
    opaque = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type,
              types.ModuleType)

    def walk(obj, path: str, level: int) -> None:
        if isinstance(obj, _PLAIN) or id(obj) in out or level > depth:
            return
        out[id(obj)] = (path, obj)
        if isinstance(obj, dict):
            items = list(obj.items())
        elif isinstance(obj, (list, tuple)):
            items = list(enumerate(obj))
        elif isinstance(obj, opaque):
            return
        elif hasattr(obj, "__dict__"):
            items = list(vars(obj).items())
        else:
            items = [(k, getattr(obj, k)) for k in getattr(obj, "__slots__", ()) if hasattr(obj, k)]
        for key, val in items:
            walk(val, f"{path}/{key}", level + 1)

    walk(root, "", 0)
    return out


class UnitState:
    """The state of an unfinished unit of work of the interacting scheme on one rank.

    That scheme runs all of a rank's blocks as one unit (one basis guides every world), so a unit
    can take hours. Its state in the middle -- the ensemble (basis CWs, coefficients, worlds) and
    the blocks' recorders, pickled, with the model and its parts (drives, tables) referred to, not
    copied -- is kept in ``unit-<rank>-of-<size>.npz`` beside the block files, with the run
    identity's digest, the step to continue from and the first and last sample ids of each of its
    blocks. A
    resumed run with the same blocks on the same number of ranks continues from that step and
    gives the same numbers as a straight run (the stepping is deterministic); otherwise (another
    sample count, another rank count, a file of an older package) the unit starts again from its
    first step, with a warning. The pickle is read only when the digest matches this run's: the
    folder is the user's own, never a file from elsewhere.
    """

    def __init__(self, checkpoint: Checkpoint, rank: int, size: int, id_ranges) -> None:
        self.checkpoint = checkpoint
        self.path = checkpoint.dir / f"unit-{int(rank)}-of-{int(size)}.npz"
        self.id_ranges = np.asarray(id_ranges, dtype=np.int64).reshape(-1, 2)  # (first, last)
        self._unsaveable = False

    def save(self, step: int, objects: dict, model) -> bool:
        """Write (atomically) the unit's state before step ``step`` (``objects`` pickled, the
        parts of ``model`` by reference); False, with one warning, when it cannot be pickled."""
        if self._unsaveable:
            return False
        parts = _shared_parts(model)
        buf = io.BytesIO()
        pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
        pickler.persistent_id = lambda obj: (None if isinstance(obj, _PLAIN)
                                             else parts.get(id(obj), (None,))[0])
        try:
            pickler.dump(objects)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            self._unsaveable = True
            log.warning("the interacting scheme's unit cannot be saved mid-run (%s); a stopped run "
                        "repeats it from its first step on --resume", exc)
            return False
        self.checkpoint.dir.mkdir(parents=True, exist_ok=True)
        arrays = {_IDENTITY_KEY: np.asarray(self.checkpoint.digest), "step": np.asarray(int(step)),
                  "id_ranges": self.id_ranges,
                  "state": np.frombuffer(buf.getbuffer(), dtype=np.uint8)}

        def write(tmp):
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        _atomic_write(self.path, write)
        return True

    def load(self, model) -> tuple[int, dict] | None:
        """(step, objects) of a matching saved state, its references resolved in ``model`` (this
        run's, built from the same run file), or None (none, or not usable: warned)."""
        if not self.path.is_file():
            return None
        try:
            with np.load(self.path) as z:
                digest = str(z[_IDENTITY_KEY])
                step = int(z["step"])
                id_ranges = np.asarray(z["id_ranges"])
                payload = z["state"].tobytes() if digest == self.checkpoint.digest else None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("%s cannot be read (%s): the unit starts again from its first step",
                        self.path, exc)
            return None
        if payload is None:
            raise ConfigError("--resume", f"{self.path} was written by another run (its run "
                              "identity differs from this run's); remove that file and resume "
                              "again (its unit is then recomputed)")
        if not np.array_equal(id_ranges, self.id_ranges):
            log.warning("%s holds another set of blocks (another --samples or rank count): the "
                        "unit starts again from its first step", self.path)
            return None
        by_path = dict(_shared_parts(model).values())
        unpickler = pickle.Unpickler(io.BytesIO(payload))
        unpickler.persistent_load = lambda path: by_path[path]
        try:
            objects = unpickler.load()
        except Exception as exc:  # an older package's classes: recompute, never crash
            log.warning("%s cannot be restored (%s: %s): the unit starts again from its first "
                        "step", self.path, type(exc).__name__, exc)
            return None
        return step, objects

    def drop(self) -> None:
        self.path.unlink(missing_ok=True)
