"""Atomic file output: write to a temporary name beside the target, rename when complete.

Guarantees of :func:`atomic_path`:

* the target is either its old content or the complete new file, never a half-written one: the
  writer writes ``.<target name>.<writer>.<random>.tmp<suffix>`` beside it, which is fsynced,
  renamed over the target (:func:`os.replace`, atomic on POSIX) and then the directory is fsynced,
  so the rename survives a power loss;
* a failure inside the block removes the temporary file (and GDAL sidecars) and leaves the target
  untouched;
* temporary files of writers that were killed (``kill -9``, OOM, power loss) are removed by the
  next :func:`atomic_path` on the same target. ``<writer>`` is ``<host hash>-<pid>-<process start
  time>``: a temp file is stale only if it was written on this host by a process that no longer
  exists (or whose PID now belongs to a process started at another time). Temp files of live
  writers — two concurrent writers of one target, or writers on other hosts of a shared file
  system — are never touched; the last rename wins;
* an unusable target (an existing directory, a directory that cannot be created or written) is an
  :class:`~geoemb.errors.OutputError` raised on entry, before the block's work.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from geoemb.errors import OutputError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "remove_stale_temps"]

log = logging.getLogger(__name__)

_MAX_PREFIX = 160  # bytes of the ".<target name>." prefix; longer names are hashed (NAME_MAX 255)


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _start_time(pid: int) -> int:
    """Start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat``); 0 if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def writer_tag(pid: int | None = None) -> str:
    """``<host hash>-<pid>-<start time>`` of the writing process (this one by default)."""
    pid = os.getpid() if pid is None else pid
    return f"{_host_tag()}-{pid}-{_start_time(pid)}"


def _tmp_prefix(target: Path) -> str:
    prefix = f".{target.name}."
    if len(prefix.encode()) > _MAX_PREFIX:
        prefix = f".{hashlib.sha1(target.name.encode()).hexdigest()[:20]}."
    return prefix


def _tmp_pattern(target: Path) -> re.Pattern:
    return re.compile(
        re.escape(_tmp_prefix(target))
        + r"(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-(?P<start>\d+)\.[0-9a-f]{8}\.tmp"
    )


def _writer_alive(host: str, pid: int, start: int) -> bool:
    """False only when the writer certainly no longer runs (same host, PID gone or reused)."""
    if host != _host_tag() or os.name == "nt":  # another machine, or no POSIX kill(pid, 0)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: exists, owned by someone else
        pass
    now = _start_time(pid)
    return not (start and now and now != start)


def remove_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Remove temporary files of ``target`` left by writers that no longer run; return them.

    Only names written by :func:`atomic_path` (with the writer's tag) are considered; a temp file
    of a live writer, of another host, or of unknown origin is kept.
    """
    target = Path(target)
    pattern = _tmp_pattern(target)
    removed = []
    try:
        candidates = list(target.parent.iterdir())
    except OSError:
        return removed
    for p in candidates:
        m = pattern.match(p.name)
        if m is None or _writer_alive(m["host"], int(m["pid"]), int(m["start"])):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except FileNotFoundError:
            continue  # another process cleaned it first
        except OSError as e:
            log.warning("cannot remove stale temporary file %s: %s", p, e)
            continue
        removed.append(p)
        log.info("removed stale temporary file %s (writer pid %s is gone)", p, m["pid"])
    return removed


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # platforms without directory handles (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for root, _, files in os.walk(path):
            for f in files:
                _fsync_file(Path(root) / f)
            _fsync_dir(Path(root))
    else:
        _fsync_file(path)


def _prepare_parent(target: Path) -> None:
    if target.is_dir():
        raise OutputError(f"output path {target} is an existing directory; expected a file path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(
            f"cannot create output directory {target.parent} for {target.name}: "
            f"{e.strerror or e}; expected a writable directory"
        ) from e


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; fsync and rename it to ``target`` on success.

    The temporary file keeps the target's suffix (so GDAL/pyarrow pick the right driver) and does
    not exist yet when yielded (writers create it). If the body raises, the temporary file is
    removed and ``target`` is left untouched. See the module docstring for the guarantees
    (stale temp files of killed writers are removed on entry; fsync of file and directory).

    Raises
    ------
    OutputError
        ``target`` is an existing directory, its directory cannot be created or written, or the
        body did not create the temporary file.

    Examples
    --------
    >>> with atomic_path("out.tif") as tmp:  # doctest: +SKIP
    ...     write_geotiff(tmp)
    """
    target = Path(target)
    _prepare_parent(target)
    remove_stale_temps(target)
    suffix = target.suffix if suffix is None else suffix
    tmp = target.parent / f"{_tmp_prefix(target)}{writer_tag()}.{secrets.token_hex(4)}.tmp{suffix}"
    try:  # reserve the name (and prove the directory is writable) before the work
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as e:
        raise OutputError(
            f"cannot write in {target.parent} (for {target.name}): {e.strerror or e}; "
            f"expected a writable directory"
        ) from e
    os.close(fd)
    tmp.unlink()  # writers create the file themselves (GDAL refuses some pre-existing files)
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"nothing was written for {target} (temporary file {tmp} missing)")
        _fsync_tree(tmp)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()
        for side in tmp.parent.glob(glob.escape(tmp.name) + ".*"):  # GDAL .aux.xml / .ovr
            side.unlink(missing_ok=True)


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``target`` atomically and return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)
