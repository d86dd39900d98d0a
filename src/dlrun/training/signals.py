"""Ctrl-C and SIGTERM: the first asks the run to stop at the next safe point, the second stops it at once.

Either way the run folder stays valid: metrics.csv holds the finished epochs, checkpoints/last.pt
the last finished epoch (it is only ever replaced whole), and summary.json says `interrupted`. Once
the run records how it ended (`StopRequest.hold`), no signal cuts that short.
The process then exits with 128 + the signal's number: 130 for Ctrl-C, 143 for SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Interrupted(BaseException):
    """Raised at a safe point after SIGINT or SIGTERM (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """Call it to learn whether a stop was asked for; `check()` raises Interrupted if so."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.finishing: str | None = None  # what is left once training is over (its test and plots)
        self.holding = False  # the run is writing its folder's last word: a second signal no longer cuts in

    def __call__(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)

    def hold(self) -> None:
        """From here on the run only records how it ended (summary.json, loggers, the panel): a second
        signal would leave its folder saying `running`, so it no longer stops the run at once. The
        process ends right after anyway."""
        self.holding = True

    def handle(self, signum: int, frame) -> None:
        if self.signum is not None and not self.holding:  # the second signal: stop now
            raise Interrupted(signum)
        if self.signum is not None:
            return
        self.signum = signum
        name = signal.Signals(signum).name
        if self.finishing:
            print(f"\ndlrun: {name}: training is over; finishing {self.finishing} first (again to stop at once)", file=sys.stderr)
        else:
            print(f"\ndlrun: {name}: stopping after this step (again to stop at once)", file=sys.stderr)


@contextmanager
def stop_on_signals(process_ends_after_a_stop: bool = False) -> Iterator[StopRequest]:
    """Install the handlers for the duration of a run (main thread only; elsewhere a no-op).

    With `process_ends_after_a_stop` (the command line, which exits once a run has stopped), a
    stopped run leaves further SIGINT and SIGTERM ignored instead of restoring Python's handler:
    a second Ctrl-C that lands while the process is exiting has nothing left to stop, and would
    otherwise print a KeyboardInterrupt traceback from the interpreter's shutdown.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.signal(s, request.handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_IGN if process_ends_after_a_stop and request() else handler)


def hold(stop: StopRequest | None) -> None:
    """`stop.hold()`, where the run has a StopRequest."""
    if stop is not None:
        stop.hold()
