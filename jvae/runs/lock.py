"""A lock on a run's work directory, so two runs never write into the same one.

``WorkdirLock(workdir)`` holds an exclusive ``flock`` on ``workdir/.jvae.lock`` and writes the
holder's PID, host, start time and command line into it. The kernel releases the lock when
the process ends, however it ends, so a lock left by a killed run is *stale*: the next run
takes it over and reports whose it was. A second run while the first is alive fails at once
with :class:`WorkdirLockedError` naming the holder.

In a multi-process job (``python -m jvae.launch``) only process 0 takes the lock: it is the
only process that writes into the work directory. :meth:`WorkdirLock.acquire` is then a
collective call: every process calls it, process 0 tries the lock, and if that fails every
process raises (process 0 the reason, the others a line pointing to it), so no process is
left waiting in a training step for a process that has stopped.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import socket
import sys
import time

__all__ = ["WorkdirLock", "WorkdirLockedError"]

LOCK_FILE = ".jvae.lock"


class WorkdirLockedError(RuntimeError):
    """Another live process holds the work directory's lock."""


class WorkdirLock:
    """Exclusive lock on a work directory (a context manager).

    Args:
      workdir: the run directory (created if missing).

    Attributes:
      stale: what the lock file said about a previous holder that died without releasing
        it (``None`` if the lock was free and clean).
    """

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = pathlib.Path(workdir)
        self.path = self.workdir / LOCK_FILE
        self.stale: dict | None = None
        self._fd: int | None = None
        self._follower = False   # a process other than 0 of a multi-process job

    @property
    def held(self) -> bool:
        """True while this process holds the lock file (never in processes 1.. of a job)."""
        return self._fd is not None

    def acquire(self) -> "WorkdirLock":
        """Take the lock (in a multi-process job: process 0 takes it, all must call this).

        Raises:
          WorkdirLockedError: a live process holds it (its PID, host and start are named);
            in processes 1.., process 0 could not take it.
          OSError: the lock file cannot be created (the directory is not writable).
        """
        if self._fd is not None or self._follower:
            return self
        count, index = _process()
        if count == 1:
            return self._acquire()
        from jvae.training.sharding import broadcast_flag

        error = None
        if index == 0:
            try:
                self._acquire()
            except (WorkdirLockedError, OSError) as e:
                error = e
        ok = broadcast_flag(error is None)
        if error is not None:
            raise error
        if not ok:
            raise WorkdirLockedError(
                f"process 0 of {count} could not lock {self.workdir} (its output says why); "
                f"process {index} stops too.")
        self._follower = index != 0
        return self

    def _acquire(self) -> "WorkdirLock":
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(10):   # retry if the holder removed the file between open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise WorkdirLockedError(
                    f"{self.workdir} is in use by another jvae run ({_describe(holder)}); "
                    "wait for it to finish, stop it, or choose another --workdir.") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = _read(fd)
            self.stale = previous or None
            info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                    "argv": sys.argv}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            os.fsync(fd)
            self._fd = fd
            return self
        raise WorkdirLockedError(f"Could not take the lock {self.path}: it keeps changing.")

    def release(self) -> None:
        """Remove the lock file and release the lock (safe to call more than once)."""
        self._follower = False
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def describe_stale(self) -> str | None:
        """One line about a stale lock that was taken over, or ``None``."""
        if not self.stale:
            return None
        return f"took over a stale lock in {self.workdir} ({_describe(self.stale)}, no longer running)"

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _process() -> tuple[int, int]:
    """``(jax.process_count(), jax.process_index())``; ``(1, 0)`` when JAX is not loaded."""
    jax = sys.modules.get("jax")
    if jax is None:
        return 1, 0
    return jax.process_count(), jax.process_index()


def _read(fd: int) -> dict:
    try:
        raw = os.pread(fd, 65536, 0)
        return json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        return {"pid": "unknown"}


def _describe(holder: dict) -> str:
    started = holder.get("started")
    when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
            if isinstance(started, (int, float)) else "unknown time")
    return f"PID {holder.get('pid', 'unknown')} on {holder.get('host', 'unknown host')}, started {when}"
