"""Writing files whole, and saying in one line why a write did not fit.

A file is replaced atomically: written whole to a uniquely named temporary file beside it,
fsynced, renamed over it, and the folder fsynced. Where the room runs out (a full disk, a quota,
the file-size limit) the old file stays, the temporary file is removed, and the error is DiskFull
naming the file, the bytes it needed and the room left on its filesystem.
"""

from __future__ import annotations

import errno
import io
import json
import os
import resource
from collections.abc import Callable
from pathlib import Path
from typing import IO

from dlrun.errors import DiskFull

TEMP_SUFFIX = ".dlrun-tmp"  # every temporary file ends so: a later owner of the folder removes strays
NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # full disk, quota reached, file-size limit (ulimit -f)


# ---------------------------------------------------------------------------------------------
# Writing whole files.


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Replace `path` with what `write` writes to a file object, whole or not at all.

    `write` writes into memory first, so a failure to serialize and a failure to store are
    told apart; then the bytes go to a temporary file beside `path`, are fsynced and renamed
    over it. Raises DiskFull where the space runs out; `path` is then as it was.
    """
    buffer = io.BytesIO()
    write(buffer)
    replace_file(path, buffer.getbuffer())


def replace_file(path: Path, data: bytes | memoryview) -> None:
    """Replace `path` with `data` atomically: a temporary file, fsync, rename, fsync of the folder."""
    path = Path(path)
    try:
        fd, tmp = _create_temp(path)
    except OSError as err:
        raise translated(err, path, len(data)) from err
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise translated(err, path, len(data)) from err
        raise
    fsync_folder(path.parent)


def write_json(path: Path, data: dict) -> None:
    """Replace `path` with `data` as indented JSON, atomically."""
    replace_file(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def _create_temp(path: Path) -> tuple[int, str]:
    """A new file beside `path`, named uniquely across processes and hosts (a random part, O_EXCL)."""
    while True:
        tmp = str(path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}{TEMP_SUFFIX}"))
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until all of `data` is written; a short write is followed by the one that says why."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def fsync_folder(folder: Path) -> None:
    """Make a rename or a new file durable. Best effort: some filesystems cannot fsync a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Saying why a write failed.


def is_disk_full(err: BaseException) -> bool:
    """Whether `err` is a write that ran out of room: ENOSPC, EDQUOT or EFBIG."""
    return isinstance(err, OSError) and err.errno in NO_SPACE


def translated(err: OSError, path: Path, needed: int) -> OSError | DiskFull:
    """DiskFull for a write that ran out of room; any other error as it is."""
    return disk_full(err, path, needed) if is_disk_full(err) else err


def disk_full(err: OSError, path: Path, needed: int) -> DiskFull:
    """DiskFull for `err` as one line: why, the file, the bytes it needed and the room there is."""
    why = reason(err)
    if err.errno == errno.EFBIG:
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            return DiskFull(f"{why}: cannot write {path} ({size(needed)} needed; the file-size limit, ulimit -f, is {size(limit)})")
    try:
        stat = os.statvfs(path.parent)
        room = f"{size(stat.f_bavail * stat.f_frsize)} free on {mount_point(path.parent)}"
    except OSError:
        room = "free space unknown"
    return DiskFull(f"{why}: cannot write {path} ({size(needed)} needed, {room})")


def reason(err: OSError) -> str:
    """The system's words for `err`, as the middle of a sentence."""
    text = err.strerror or str(err)
    return text[:1].lower() + text[1:]  # 'No space left on device' -> 'no space left on device'


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem that holds `path`."""
    path = Path(os.path.abspath(path))
    while not os.path.ismount(path):
        path = path.parent
    return path


def size(count: int) -> str:
    """A byte count for people: '212 bytes', '4.1 kB', '3.1 MB', '2.0 GB' (powers of 1000)."""
    if count >= 1e9:
        return f"{count / 1e9:.1f} GB"
    if count >= 1e5:
        return f"{count / 1e6:.1f} MB"
    if count >= 1e3:
        return f"{count / 1e3:.1f} kB"
    return f"{count} bytes"
