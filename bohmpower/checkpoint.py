"""Checkpoints of conditional-wavefunction runs: ``OUT.h5.checkpoint/`` beside the output.

The unit is the finished block of sample ids (``power.recorder``): each is written as its own file
``block-<first>-<last>.npz`` (temporary name, then rename, so a crash never leaves a half-written
file), next to ``manifest.json`` which identifies the run (a hash of the resolved run file without
its sample count, the seed, the block size). A resumed run skips the blocks on disk and computes
the rest, and since blocks merge in id order the result equals an uninterrupted run's, whatever the
number of ranks before and after. A checkpoint written for another run file is refused, and nothing
in it is touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from bohmpower.errors import ConfigError
from bohmpower.power.estimators import BlockSums
from bohmpower.power.recorder import BLOCK_SIZE, BlockResult

MANIFEST = "manifest.json"
VERSION = 1
_BLOCK_RE = re.compile(r"^block-(\d+)-(\d+)\.npz$")


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
    return {"version": VERSION, "config_hash_without_count": digest,
            "seed": int(config.trajectories.seed), "block_size": BLOCK_SIZE}


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


class Checkpoint:
    """The checkpoint folder of one output file (see the module docstring)."""

    def __init__(self, output: Path, identity: dict):
        self.dir = checkpoint_path(Path(output))
        self.identity = identity

    def exists(self) -> bool:
        return (self.dir / MANIFEST).exists()

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
                what = ("was written for a different run file (or a different seed)"
                        if key != "version" else "has another format version")
                raise ConfigError(
                    "--resume", f"the checkpoint {self.dir} {what} ({key}: {data.get(key)!r} vs "
                    f"{val!r}); resume with the run file that wrote it, or choose another output")
        return data

    def save_block(self, result: BlockResult) -> None:
        """Write one finished block atomically."""
        self.dir.mkdir(parents=True, exist_ok=True)
        arrays = {f"sums/{k}": np.asarray(v) for k, v in result.sums.as_dict().items()}
        for sid, d in result.stored.items():
            for name, arr in d.items():
                arrays[f"stored/{sid}/{name}"] = arr
        arrays["crossed"] = np.asarray(result.crossed)
        name = f"block-{result.sums.first_id}-{result.sums.last_id}.npz"

        def write(tmp):
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        _atomic_write(self.dir / name, write)

    def load_blocks(self) -> dict[int, BlockResult]:
        """Every finished block on disk, keyed by first sample id; a corrupted file is refused."""
        out = {}
        for path in sorted(self.dir.glob("block-*.npz")):
            if not _BLOCK_RE.match(path.name):
                continue
            try:
                with np.load(path) as z:
                    data = {k: z[k] for k in z.files}
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
                raise ConfigError("--resume", f"{path} is corrupted ({exc}); remove that file and "
                                  "resume again (its samples are recomputed)") from None
            sums = BlockSums.from_dict({k[5:]: _scalar(v) for k, v in data.items()
                                        if k.startswith("sums/")})
            stored: dict = {}
            for k, v in data.items():
                if k.startswith("stored/"):
                    _, sid, name = k.split("/", 2)
                    stored.setdefault(int(sid), {})[name] = v
            out[sums.first_id] = BlockResult(sums, stored, int(data["crossed"]))
        return out

    def remove(self) -> None:
        """Delete the checkpoint once the final result file is written."""
        if not self.dir.exists():
            return
        for path in self.dir.iterdir():
            path.unlink()
        self.dir.rmdir()


def _scalar(v: np.ndarray):
    return v.item() if v.ndim == 0 else v
