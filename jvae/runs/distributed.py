"""Joining a multi-process job: the ``JVAE_*`` variables that ``python -m jvae.launch`` sets.

:func:`initialize_from_env` runs in every process of a job before any JAX computation (the
training command calls it first); it calls ``jax.distributed.initialize`` with the
coordinator, process count and rank the launcher put in the environment.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

__all__ = ["initialize_from_env", "ENV_PROCESS_ID", "ENV_NUM_PROCESSES", "ENV_COORDINATOR",
           "ENV_INIT_TIMEOUT", "ENV_LAUNCHER", "DEFAULT_INIT_TIMEOUT"]

ENV_PROCESS_ID = "JVAE_PROCESS_ID"
ENV_NUM_PROCESSES = "JVAE_NUM_PROCESSES"
ENV_COORDINATOR = "JVAE_COORDINATOR"
ENV_INIT_TIMEOUT = "JVAE_INIT_TIMEOUT"
DEFAULT_INIT_TIMEOUT = 120
ENV_LAUNCHER = "JVAE_LAUNCHER_PID"


def initialize_from_env(environ: dict | None = None) -> bool:
    """Join the multi-process job described by the ``JVAE_*`` variables, if any.

    Must run before any JAX computation. Without ``JVAE_NUM_PROCESSES`` (or with 1) it does
    nothing. Otherwise it calls ``jax.distributed.initialize(coordinator_address,
    num_processes, process_id, initialization_timeout)``; process 0 also runs the coordinator
    service on ``JVAE_COORDINATOR``. On CPU the cross-process collectives are gloo's (set
    explicitly when this JAX has no default).

    Args:
      environ: the variables (default ``os.environ``).

    Returns:
      True if this process joined a job of more than one process.

    Raises:
      ValueError: a ``JVAE_*`` variable is missing or malformed (named in the message).
      RuntimeError: the processes did not all connect within the timeout (the message names
        the coordinator address and this process).
    """
    env = os.environ if environ is None else environ
    if ENV_NUM_PROCESSES not in env:
        return False
    num = _int_var(env, ENV_NUM_PROCESSES, minimum=1)
    if num == 1:
        return False
    pid = _int_var(env, ENV_PROCESS_ID, minimum=0)
    if pid >= num:
        raise ValueError(f"{ENV_PROCESS_ID}={pid} must be below {ENV_NUM_PROCESSES}={num}.")
    address = env.get(ENV_COORDINATOR, "").strip()
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{ENV_COORDINATOR}={address!r} must be HOST:PORT, e.g. 127.0.0.1:12345.")
    timeout = _int_var(env, ENV_INIT_TIMEOUT, minimum=1, default=DEFAULT_INIT_TIMEOUT)

    _die_with_launcher(env)
    # JAX aborts the whole process (no Python exception) when the coordinator cannot be
    # reached in time, so the address is checked here first, with a one-line error.
    if pid == 0:
        _check_bindable(int(port), address)
    else:
        _wait_for_coordinator(host, int(port), timeout, pid, num)

    import jax

    if jax.config.values.get("jax_cpu_collectives_implementation") in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=address, num_processes=num,
                                   process_id=pid, initialization_timeout=timeout)
    except Exception as e:  # noqa: BLE001 - jaxlib raises XlaRuntimeError and others
        first = " ".join(str(e).split())[:300]
        raise RuntimeError(
            f"process {pid} of {num} could not join the job at the coordinator {address} "
            f"within {timeout} s ({type(e).__name__}: {first}); check that all {num} "
            f"processes were started with the same {ENV_COORDINATOR} and that process 0 "
            "is running.") from e
    return True


def _int_var(env, name: str, minimum: int, default: int | None = None) -> int:
    raw = env.get(name)
    if raw is None:
        if default is None:
            raise ValueError(f"{name} is not set (jvae.launch sets it for every process).")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer.") from None
    if value < minimum:
        raise ValueError(f"{name}={value} must be at least {minimum}.")
    return value


def _check_bindable(port: int, address: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError as e:
            raise RuntimeError(f"process 0 cannot run the coordinator on {address}: port "
                               f"{port} is not free ({e.strerror or e}); choose another "
                               f"port.") from None


def _wait_for_coordinator(host: str, port: int, timeout: float, pid: int, num: int) -> None:
    """Return once a TCP connection to ``host:port`` succeeds; RuntimeError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1.0).close()
            return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"process {pid} of {num} could not reach the coordinator at "
                    f"{host}:{port} within {timeout:g} s ({e.strerror or e}); is process 0 "
                    f"running, with the same {ENV_COORDINATOR}?") from None
            time.sleep(0.2)


def _die_with_launcher(env) -> None:
    """In a process started by ``jvae.launch``: end when the launcher ends, however it ends
    (a launcher killed with SIGKILL cannot stop its processes itself). A direct child asks
    Linux for SIGTERM at the launcher's death (``PR_SET_PDEATHSIG``); a process started
    through another command (``-- sh -c ...``) watches the launcher from a thread and sends
    itself SIGTERM when it is gone. Raises ``RuntimeError`` when the launcher is already
    gone. The training command stops on that SIGTERM (:mod:`jvae.cli.signals`)."""
    raw = env.get(ENV_LAUNCHER)
    if raw is None:
        return
    try:
        launcher = int(raw)
    except ValueError:
        raise ValueError(f"{ENV_LAUNCHER}={raw!r} is not a process id.") from None
    if os.getppid() == launcher and _parent_death_signal():
        if os.getppid() == launcher:       # (the launcher may have died just before)
            return
    if not _alive(launcher):
        raise RuntimeError(f"the launcher of this job (jvae.launch, process {launcher}) has "
                           "exited; this process stops too.")
    threading.Thread(target=_watch_launcher, args=(launcher,), name="jvae-launcher-watch",
                     daemon=True).start()


def _parent_death_signal() -> bool:
    """Ask Linux to send SIGTERM when the parent dies; whether that worked."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM) == 0  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _watch_launcher(pid: int, every: float = 1.0) -> None:
    while _alive(pid):
        time.sleep(every)
    os.kill(os.getpid(), signal.SIGTERM)
