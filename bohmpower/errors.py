"""Error hierarchy. Each message says what to change; the CLI maps classes to exit codes."""

from __future__ import annotations

import errno


class BohmpowerError(Exception):
    """Base class of every error bohmpower raises on purpose."""

    exit_code = 1


class ConfigError(BohmpowerError):
    """A run file or argument that cannot be used. ``key`` is the dotted key to change."""

    exit_code = 2

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


class ResultFileError(BohmpowerError):
    """A result file that cannot be read or compared."""

    exit_code = 2


class NumericalError(BohmpowerError):
    """A run that went bad (norm loss, NaN, lost resolution): says the step, the time and the cause.

    ``time`` is in atomic units; the message writes it in ``units`` (a `bohmpower.units.UnitSystem`,
    the run file's system; atomic when None). The run loops, which know the run's system, set it with
    :meth:`in_units` when the engine that raised did not.
    """

    exit_code = 1

    def __init__(self, step: int, time: float, cause: str, units=None):
        self.step = step
        self.time = time
        self.cause = cause
        self._what = cause
        self.units = units
        super().__init__(self._text())

    def _text(self) -> str:
        from bohmpower.units import ATOMIC

        when = (self.units or ATOMIC).quantity(self.time, "time")
        return f"numerical failure at step {self.step} (t = {when}): {self._what}"

    def __str__(self) -> str:
        return self._text()

    def in_units(self, units) -> NumericalError:
        """Write the time in ``units`` from now on (unless the raiser already chose a system)."""
        if self.units is None:
            self.units = units
            self.args = (self._text(),)
        return self


class BadBlockError(BohmpowerError):
    """A finished block of samples whose values cannot be merged (not finite): names the block."""

    exit_code = 1


class StorageError(BohmpowerError):
    """A file that could not be written because the disk, the quota or the file-size limit is full.

    Nothing partial stays behind (the temporary file is removed); the message names the file and
    says what was kept (finished checkpoint blocks stay usable by ``--resume``).
    """

    exit_code = 1


#: errno values that mean "no room for this file": a full disk, a full quota, a file-size limit.
OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)})


def is_out_of_space(exc: BaseException) -> bool:
    """True for an OSError whose errno says the disk, the quota or the file-size limit is full."""
    return isinstance(exc, OSError) and exc.errno in OUT_OF_SPACE_ERRNOS


class StoppedEarly(BohmpowerError):
    """A run stopped cleanly (signal, wall-time limit) after writing a checkpoint."""

    exit_code = 75
