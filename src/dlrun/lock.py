"""One writer per run folder: an OS lock on RUN/.lock, held by the process that records the run.

The lock is `flock(LOCK_EX)` on an open file: the kernel releases it when that file is closed or
the process dies, however it dies, so a killed run never leaves a stale lock behind. The file's
text (pid, host, start time) only says who holds it; whether it is held is always asked of the
kernel, never read from the text. The file itself stays in the folder: removing a lock file while
another process may be opening it would let two processes lock two different files.

Imports neither torch nor Hydra: the run-folder reader (dlrun.analysis.runfolder) uses
`writer_gone` to tell a `running` run whose process died from a live one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from datetime import datetime
from pathlib import Path

from dlrun.errors import RunInUse

LOCK_NAME = ".lock"
RETRY_S = 0.2  # a reader's probe (lock_holder) holds the lock for microseconds: wait that out before refusing
_BUSY = {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES}  # EACCES: what some systems return for a held lock


def acquire(folder: Path) -> int:
    """Lock `folder` for this process and return the lock's file descriptor (close it to release).

    Raises RunInUse naming the holder when another open lock holds it: another process, or another
    RunRecorder of this same process. Where the filesystem cannot lock at all, prints one warning
    and returns the descriptor unlocked, so that runs still work there.
    """
    path = Path(folder) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + RETRY_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in _BUSY:
                    print(
                        f"dlrun: warning: cannot lock {folder} ({err.strerror}); nothing stops a second dlrun from writing it",
                        file=sys.stderr,
                    )
                    return fd
                if time.monotonic() >= deadline:
                    raise RunInUse(f"{folder} is in use by {_describe(fd)}; wait for it to finish or stop it") from None
                time.sleep(0.02)
        _write_holder(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def release(fd: int) -> None:
    """Release a lock taken by `acquire` (closing its descriptor releases it)."""
    os.close(fd)


def lock_holder(folder: Path) -> str | None:
    """Who holds `folder`'s lock, e.g. 'dlrun pid 1234 on host h (started ...)'; None when nobody does.

    Also None for a folder without a lock file (a finished run of an older dlrun, or a folder
    never run) and where it cannot tell (an unreadable folder, a filesystem without locks).
    Changes nothing in the folder: it opens the lock file read-only and probes with a shared lock,
    so several readers never see each other as holders.
    """
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        return _describe(fd) if err.errno in _BUSY else None
    else:
        return None  # closing fd below drops the probe's lock
    finally:
        os.close(fd)


def writer_gone(folder: Path) -> bool:
    """Whether the process that locked `folder` last is known to be gone: nobody holds the lock, the
    lock file names this host, and the pid it names is no process here, or one that has ended and
    waits to be collected by its parent (a killed run whose parent has not yet called wait()).

    False where it lives, and wherever this cannot be told for sure: no lock file (a folder of an
    older dlrun), a filesystem without locks, a writer on another host (on some cluster
    filesystems a lock is seen only on the node that took it). Changes nothing in the folder."""
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released with the descriptor below
        except OSError:  # held, or this filesystem cannot lock
            return False
        try:
            holder = json.loads(os.pread(fd, 4096, 0))
            host, pid = holder["host"], int(holder["pid"])
        except (OSError, ValueError, TypeError, KeyError):
            return False
    finally:
        os.close(fd)
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # it exists, under another user
        return False
    # it exists: a killed writer whose exit its parent has not collected yet (a zombie), or else a
    # live process, the writer itself holding no lock here or a pid used again
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether process `pid` has ended and only waits for its parent to collect its exit status
    (Linux's /proc; False where there is none to ask)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]  # the state follows the command's name, which may hold ")"


def _write_holder(fd: int) -> None:
    """Say who holds the lock; best effort (on a full disk the lock holds all the same)."""
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}) + "\n"
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
    except OSError:
        pass


def _describe(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0))
        return f"dlrun pid {holder['pid']} on host {holder['host']} (started {holder['started']})"
    except (OSError, ValueError, TypeError, KeyError):
        return "another dlrun process"  # it has locked the file and not yet said who it is
