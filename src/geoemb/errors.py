"""geoemb's exception family: one base class, so callers (and the CLI) can tell a user-facing
input problem from a bug.

Every geoemb error message names the file/URL/config key at fault and what was expected. Existing
specific errors (``RasterInputError``, ``ESWDataError``, ``GeoParquetError``…) subclass the matching
class here as well as the builtin they always were, so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class GeoembError(Exception):
    """Base of every error geoemb raises on purpose (bad input, refused operation)."""


class InputError(GeoembError, ValueError):
    """An input file, table, raster or argument is not what was expected."""


class CheckpointError(GeoembError, ValueError):
    """A checkpoint cannot be read (truncated, not a checkpoint, not written by geoemb)."""


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint asks to build something outside the allowlist (``trust_checkpoint=true``
    is the explicit opt-out for a user's own files)."""


class ResumeMismatchError(GeoembError, RuntimeError):
    """A job resumed with arguments or inputs that differ from the ones it started with."""


class OutputError(GeoembError, ValueError):
    """An output path cannot be used (it is the input, an existing directory, not writable…)."""


class DataNotFoundError(GeoembError, FileNotFoundError):
    """A dataset is missing; the message says where to get it and how to use the stand-in."""
