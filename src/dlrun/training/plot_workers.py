"""A run's pictures drawn by helper processes, started before the run imports torch.

On a 2-core CPU, importing matplotlib and drawing a classification run's three pictures took
about a third of a default run's wall time, longer than its training (benchmarks/README.md,
"Start-up"). `start()` starts the helpers as the command starts: they import matplotlib on the
other core while the run's process composes its config and imports torch. `draw()` hands them
the finished run's pictures, one picture to each in turn, and waits for all of them. The helpers
serve every run of the process (a sweep's jobs run one after another in one process) and end
with it.

A helper is a fresh interpreter running `main()` with this process's sys.path: it shares nothing
with the run's process (no fork of a process that may hold threads, no re-import of the caller's
__main__), and reads pickled (function, args, kwargs) from its stdin, each after its length,
answering each with one byte on its stdout: DREW or FAILED.

A picture a helper could not draw (an error, a helper gone) is drawn again here, in the run's own
process: the result is the same file, and an error is raised just as without helpers. The helpers
import nothing of the run's but the drawing functions sent to them (dlrun.training.plots), which
take plain lists and numpy arrays, and never torch.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any

Picture = tuple[Callable[..., Any], tuple, dict]  # a drawing function of a module the helper can import, and its arguments

HELPERS = 2  # three pictures: two at once on a 2-core CPU, the third after the first
NICENESS = 5  # the run's process comes first while both work (config, torch's import); idle, the helpers take no CPU
ANSWER_WITHIN_S = 600.0  # a helper silent for this long on one picture is taken as hung
FRAME = struct.Struct("<Q")  # each request is its pickle's length, then the pickle: a bad one never shifts the next
DREW, FAILED = b"\x01", b"\x00"  # an answer is one byte, read straight from the pipe: none waits in a buffer unseen by select


class _Helper:
    def __init__(self) -> None:
        # this process's module path, as multiprocessing's spawn passes it: the helper imports what this process would
        code = f"import sys; sys.path[:] = {sys.path!r}; from {__name__} import main; main()"
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def send(self, picture: Picture) -> None:
        data = pickle.dumps(picture)  # before anything is written: arguments that do not travel are refused whole
        self.process.stdin.write(FRAME.pack(len(data)) + data)
        self.process.stdin.flush()

    def answer(self) -> bool:
        """Whether the helper drew the oldest picture sent to it; False if it failed, died, or hung."""
        fd = self.process.stdout.fileno()
        try:
            ready, _, _ = select.select([fd], [], [], ANSWER_WITHIN_S)
            if not ready:
                self.process.kill()  # hung: the picture is drawn here, and this helper serves no more
                self.process.wait()
                return False
            return os.read(fd, 1) == DREW  # b"" when the helper died (killed, out of memory)
        except OSError:
            return False

    def stop(self) -> None:
        self.process.kill()  # idle, or still importing: nothing of a run's is in its hands
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:  # a pipe whose reader is gone
                pass


_helpers: list[_Helper] = []


def start(count: int = HELPERS) -> None:
    """Start the helpers, unless they run already, or unless this process may use only one CPU
    (taskset, a Slurm job's allocation): there they would only take turns with the run."""
    if _helpers:
        return
    cpus = usable_cpus()
    if cpus < 2:
        return
    try:
        for _ in range(min(count, cpus)):
            _helpers.append(_Helper())
    except (OSError, ValueError, TypeError):  # no process to spare, no interpreter to start: drawn in the run's process
        stop()


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it, else the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def running() -> int:
    """How many helpers are alive."""
    return sum(helper.process.poll() is None for helper in _helpers)


def stop() -> None:
    """End the helpers (a helper also ends when the run's process does: its stdin closes)."""
    while _helpers:
        _helpers.pop().stop()


atexit.register(stop)  # a helper would end with the process anyway (its stdin closes); this waits for it


def draw(pictures: Sequence[Picture]) -> int:
    """Draw `pictures` (the helpers in turn, or here) and return when all are written; return how
    many the helpers drew. An exception of a drawing function is raised here, as if drawn here."""
    sent: list[tuple[_Helper, Picture]] = []
    here: list[Picture] = []
    for i, picture in enumerate(pictures):
        if not _helpers:
            here.append(picture)
            continue
        helper = _helpers[i % len(_helpers)]
        try:
            helper.send(picture)
            sent.append((helper, picture))
        except Exception:  # noqa: BLE001  a helper gone, or arguments that do not pickle
            here.append(picture)
    drawn = 0
    for helper, picture in sent:
        if helper.answer():
            drawn += 1
        else:
            here.append(picture)
    if running() < len(_helpers):
        stop()  # a broken helper serves no later run; the next start() starts afresh
    for function, args, kwargs in here:
        function(*args, **kwargs)
    return drawn


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """A helper's life: import matplotlib, then draw each picture read from `requests` until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the terminal's whole process group; the run decides
    if hasattr(os, "nice"):
        os.nice(NICENESS)
    try:
        import matplotlib.backends.backend_agg  # noqa: F401  the slow imports, done while the run imports torch
        import matplotlib.figure  # noqa: F401
    except Exception:  # noqa: BLE001  the run's process draws every picture, and reports the error once, itself
        return

    while True:
        header = requests.read(FRAME.size)
        data = requests.read(FRAME.unpack(header)[0]) if len(header) == FRAME.size else b""
        if not data:  # the run's process closed the pipe, or is gone
            return
        try:  # unpickling imports the drawing function's module: an error there is the picture's, like one in it
            function, args, kwargs = pickle.loads(data)
            function(*args, **kwargs)
        except Exception:  # noqa: BLE001  the run's process draws it again, and sees the error itself
            done = False
        else:
            done = True
        try:
            answers.write(DREW if done else FAILED)
            answers.flush()
        except OSError:  # the run's process is gone
            return


def main() -> None:
    """A helper process: pictures from stdin, answers on stdout."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print goes to stderr, never into the answers
    serve(sys.stdin.buffer, answers)
