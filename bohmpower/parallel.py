"""MPI: the only module that imports mpi4py. Without mpi4py, or with one rank, everything is serial.

The unit of work is a fixed block of sample ids (``power.recorder.BLOCK_SIZE``). Ranks take blocks
round-robin; after each round rank 0 receives the round's blocks one at a time in id order
(:func:`to_root_in_order`) and merges each as it arrives, so the result does not depend on the
number of ranks (SPEC.md "Reproducibility") and rank 0 holds one block in transit, not all of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: Environment variables that MPI launchers set on every rank (Open MPI, MPICH/Hydra, Slurm, PMIx).
_LAUNCHER_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS",
                       "PMIX_SIZE")


@dataclass
class SerialComm:
    """Stand-in for an MPI communicator when mpi4py is absent or there is one process."""

    rank: int = 0
    size: int = 1

    def send(self, obj, dest: int = 0, tag: int = 0) -> None:
        raise RuntimeError("a serial run has no other rank to send to")

    def recv(self, source: int = 0, tag: int = 0):
        raise RuntimeError("a serial run has no other rank to receive from")

    def gather(self, obj, root: int = 0):
        return [obj]

    def bcast(self, obj, root: int = 0):
        return obj

    def allgather(self, obj):
        return [obj]

    def allreduce(self, value, op=None):
        return value

    def Get_size(self) -> int:  # noqa: N802
        return self.size

    def Barrier(self) -> None:  # noqa: N802  (mpi4py's name)
        pass

    def Abort(self, code: int = 1) -> None:  # noqa: N802
        raise SystemExit(code)


def launcher_size() -> int | None:
    """Number of processes an MPI launcher says it started (None when not under a launcher)."""
    for var in _LAUNCHER_SIZE_VARS:
        val = os.environ.get(var)
        if val and val.isdigit():
            return int(val)
    return None


def world_comm():
    """COMM_WORLD when mpi4py is importable and the process runs under a launcher, else serial.

    Only the command line calls this; everything else receives ``comm`` explicitly.

    Raises
    ------
    RuntimeError
        When a launcher started several processes but MPI reports size 1 in each: P copies of a
        serial job (mpi4py built against another MPI than the launcher's, or no mpi4py).
    """
    expected = launcher_size()
    try:
        from mpi4py import MPI
    except ImportError:
        if expected and expected > 1:
            raise RuntimeError(
                f"started by an MPI launcher as {expected} processes, but mpi4py is not installed: "
                "each process would run the whole job alone. Install it (pip install "
                "'bohmpower[mpi]'; on a cluster build it against the cluster's MPI: "
                "pip install --no-binary mpi4py mpi4py with the cluster's mpicc)") from None
        return SerialComm()
    comm = MPI.COMM_WORLD
    if comm.Get_size() == 1:
        if expected and expected > 1:
            raise RuntimeError(
                f"the launcher started {expected} processes but each sees an MPI world of size 1: "
                "mpi4py is linked against a different MPI than the launcher (e.g. the PyPI mpich "
                "wheel under the cluster's srun/mpirun). Rebuild it against the cluster's MPI: "
                "pip install --no-binary mpi4py mpi4py (with the cluster's mpicc on PATH), or "
                "launch with the mpiexec that matches it")
        return SerialComm()
    return comm


def my_blocks(blocks: list, comm) -> list:
    """The blocks this rank runs: round-robin over the ranks (rank r takes blocks r, r+P, ...).

    Sample costs are nearly equal within a run (same N, grid and steps), so a static round-robin
    keeps ranks within one block of each other; a rank with no block is a normal case.
    """
    return blocks[comm.rank::comm.size]


def gather_to_root(items: list, comm) -> list | None:
    """Concatenate every rank's list on rank 0 (None elsewhere)."""
    parts = comm.gather(items, root=0)
    if comm.rank != 0:
        return None
    return [item for part in parts for item in part]


#: Message tag of finished blocks sent to rank 0 (MPI keeps messages of one tag between two ranks
#: in the order they were sent).
BLOCK_TAG = 11


def to_root_in_order(owners: list[int], mine: list, comm):
    """The items of one round on rank 0, one at a time, in the order of ``owners``.

    ``owners[k]`` is the rank holding the round's k-th item; ``mine`` is this rank's items in that
    order. Other ranks send theirs to rank 0 (blocking, one message per item) and get an empty
    iterator; rank 0 gets an iterator that takes its own items and receives the others when their
    turn comes, so it holds one item in transit, whatever the number of ranks. Every rank must call
    this for the round (the sends and receives pair up in order: no deadlock, as rank 0 receives in
    the order each rank sends).
    """
    if comm.rank != 0:
        for item in mine:
            comm.send(item, dest=0, tag=BLOCK_TAG)
        return iter(())
    if sum(1 for o in owners if o == 0) != len(mine):
        raise ValueError(f"rank 0 holds {len(mine)} items but owns "
                         f"{sum(1 for o in owners if o == 0)} of the round")
    return _receive_in_order(owners, iter(mine), comm)


def _receive_in_order(owners, own, comm):
    for owner in owners:
        yield next(own) if owner == 0 else comm.recv(source=owner, tag=BLOCK_TAG)


def reduce_op(name: str):
    """mpi4py's MAX or SUM (None when mpi4py is absent: the serial comm ignores it)."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return {"max": MPI.MAX, "sum": MPI.SUM}[name]


def any_rank(flag: bool, comm) -> bool:
    """True on every rank when ``flag`` is true on any rank (one allreduce)."""
    return bool(comm.allreduce(int(bool(flag)), op=reduce_op("max")))


def sum_over_ranks(value, comm):
    return comm.allreduce(value, op=reduce_op("sum"))
