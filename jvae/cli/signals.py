"""Stopping a command line on SIGTERM or SIGINT, whatever handlers other libraries install.

``python -m jvae.train`` and ``jvae.evaluate`` run their work inside :class:`StopOnSignals`:

- SIGTERM and SIGINT raise :class:`SignalStop` (a ``KeyboardInterrupt``) in the main thread,
  so the work unwinds (checkpoint writes clean up, the work directory's lock is released)
  and the command prints one line saying what to do next and exits with ``128 + signal``
  (130 for SIGINT, 143 for SIGTERM).
- JAX's distributed runtime installs a C-level SIGTERM handler of its own when a
  multi-process job starts (its preemption notifier, which only logs "SIGTERM caught"): a
  process of a ``jvae.launch`` job would then train on. A guard thread checks the handlers
  the process actually has (``sigaction``) every :data:`CHECK_EVERY` seconds and puts this
  one back when anything replaced it; :meth:`StopOnSignals.reinstall` does it at once (the
  training command calls it right after joining a job).
- The main thread may be inside a long compiled epoch or a collective waiting for a process
  that is gone, where no Python handler runs. Python's C handler also writes the signal's
  number to a wakeup socket that the guard thread watches: if the main thread has not
  finished :data:`GRACE` seconds after the first signal, or at once on a second one, the
  guard prints the same line and ends the process with the same status (``os._exit``).
  Checkpoints are written atomically, so an end at any moment leaves a resumable run.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import sys
import threading
from typing import Callable

__all__ = ["SignalStop", "StopOnSignals", "GRACE", "CHECK_EVERY", "exit_status"]

#: Seconds the main thread has, after the first signal, to end by itself.
GRACE = 10.0
#: Seconds between two checks of the installed handlers.
CHECK_EVERY = 0.2
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalStop(KeyboardInterrupt):
    """Raised in the main thread by SIGINT or SIGTERM; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def exit_status(signum: int) -> int:
    """The shell's status of a command ended by ``signum``: ``128 + signum``."""
    return 128 + int(signum)


class _Sigaction(ctypes.Structure):
    """glibc's ``struct sigaction`` on Linux (x86-64 and AArch64)."""

    _fields_ = [("handler", ctypes.c_void_p), ("mask", ctypes.c_ulong * 16),
                ("flags", ctypes.c_int), ("restorer", ctypes.c_void_p)]


class StopOnSignals:
    """Context manager: SIGINT and SIGTERM stop the work promptly (see the module docstring).

    Args:
      message: ``signum -> str``, the one line (``error: ...``) printed when a signal stops
        the command; the caller prints it after catching :class:`SignalStop`, the guard
        prints it itself when it has to end the process.
      grace: seconds the main thread has to end after the first signal.
      check_every: seconds between two checks of the installed handlers.

    Outside the main thread it does nothing (Python handles signals there only).
    """

    def __init__(self, message: Callable[[int], str], *, grace: float = GRACE,
                 check_every: float = CHECK_EVERY):
        self.message, self.grace, self.check_every = message, float(grace), float(check_every)
        self.received: int | None = None
        self._reported = threading.Event()
        self._closed = threading.Event()
        self._active = False

    # ------------------------------------------------------------------ context

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._active = True
        self._old = {s: signal.getsignal(s) for s in _SIGNALS}
        for s in _SIGNALS:
            signal.signal(s, self._handle)
        self._read, write = socket.socketpair()
        write.setblocking(False)
        self._write = write
        self._old_wakeup = signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)
        self._ours = {s: _current_action(s) for s in _SIGNALS}
        self._thread = threading.Thread(target=self._guard, name="jvae-signal-guard",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self._active:
            return
        self._closed.set()
        self._thread.join(timeout=5 * self.check_every + 1.0)
        signal.set_wakeup_fd(self._old_wakeup)
        for s, handler in self._old.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self._read.close()
        self._write.close()
        self._active = False

    # ------------------------------------------------------------------ public

    def reinstall(self) -> None:
        """Put this handler back now, wherever another library replaced it (call it in the
        main thread after code that may install its own, e.g. ``jax.distributed``)."""
        if self._active:
            for s in _SIGNALS:
                signal.signal(s, self._handle)
            self._ours = {s: _current_action(s) for s in _SIGNALS}

    def reported(self) -> None:
        """Tell the guard that the caller has printed the message (it prints it otherwise)."""
        self._reported.set()

    def finish(self, status: int) -> int:
        """Return ``status``, or end the process with it at once (``os._exit``, after
        flushing) in a multi-process job, whose interpreter exit would wait for the other
        processes in JAX's shutdown barrier."""
        if _in_job():
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
        return status

    # ------------------------------------------------------------------ private

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = int(signum)
        raise SignalStop(signum)

    def _guard(self) -> None:
        """Watch the wakeup socket and the installed handlers until the context closes."""
        deadline = None
        while not self._closed.is_set():
            timeout = self.check_every if deadline is None else max(
                0.0, min(self.check_every, deadline - _now()))
            ready, _, _ = select.select([self._read], [], [], timeout)
            if ready:
                for signum in self._read.recv(64):
                    if signum not in _SIGNALS:
                        continue
                    if deadline is not None:           # a second signal: end at once
                        self._force(signum)
                    self.received = self.received or signum
                    deadline = _now() + self.grace
            if deadline is not None and _now() >= deadline and not self._closed.is_set():
                self._force(self.received or signal.SIGTERM)
            self._restore_handlers()

    def _restore_handlers(self) -> None:
        for s, ours in self._ours.items():
            if ours is not None and _current_action(s).handler != ours.handler:
                _set_action(s, ours)

    def _force(self, signum: int) -> None:
        if not self._reported.is_set():
            try:
                print(self.message(signum), file=sys.stderr, flush=True)
            except Exception:  # noqa: BLE001 - the process ends regardless
                pass
        sys.stdout.flush()
        os._exit(exit_status(signum))


# ----------------------------------------------------------------------------- private


def _now() -> float:
    import time

    return time.monotonic()


def _in_job() -> bool:
    """Whether this process joined a multi-process JAX job."""
    jax = sys.modules.get("jax")
    try:
        return jax is not None and jax.process_count() > 1
    except Exception:  # noqa: BLE001 - no backend yet: not in a job
        return False


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def _current_action(signum: int) -> _Sigaction | None:
    """The process's installed action for ``signum`` (Linux; ``None`` elsewhere)."""
    if _LIBC is None:
        return None
    action = _Sigaction()
    if _LIBC.sigaction(int(signum), None, ctypes.byref(action)) != 0:
        return None
    return action


def _set_action(signum: int, action: _Sigaction) -> None:
    if _LIBC is not None:
        _LIBC.sigaction(int(signum), ctypes.byref(action), None)
