"""Multi-process training on one machine: ``python -m jvae.launch -n N -- TRAIN ARGS``.

The launcher starts ``N`` processes of ``python -m jvae.train TRAIN ARGS`` (or of any command
given after ``--`` that does not start with a dash, e.g. ``-- python my_script.py``), each with
the environment that :func:`jvae.runs.distributed.initialize_from_env` reads:

``JVAE_PROCESS_ID`` (``0 .. N-1``), ``JVAE_NUM_PROCESSES`` (``N``), ``JVAE_COORDINATOR``
(``127.0.0.1:PORT``, a free port), ``JVAE_INIT_TIMEOUT`` (seconds to wait for the other
processes), and with ``--devices-per-process K`` the ``XLA_FLAGS`` entry
``--xla_force_host_platform_device_count=K`` (K CPU devices in each process).

``python -m jvae.train`` calls that function before any JAX computation: it calls
``jax.distributed.initialize`` (JAX's multi-controller runtime; cross-process collectives on
CPU by gloo), after which ``jax.devices()`` lists the devices of all processes and a run with
``--config.data_parallel=True`` splits every global batch over all of them. Process 0 writes
the metrics, figures and checkpoints; the others compute their share of each step and wait
for it (see :mod:`jvae.training.sharding`).

Process 0's output goes to the terminal; process ``i >= 1`` writes to
``WORKDIR/logs/process-i.log`` (``--log-dir`` elsewhere; a temporary directory without
``--workdir``), and the tail of that log is printed if the process fails. When one process
fails, the launcher stops the others and exits with the failed process's status (a process
stopped by SIGINT or SIGTERM is named before the peers that failed on its lost connection,
so ``kill`` of one process ends the job with ``128 + signal``); SIGINT and
SIGTERM are forwarded to every process, which stops with the resume hint and the status
``128 + signal`` whatever JAX's runtime installs (:mod:`jvae.cli.signals`); the launcher then
exits with that status (a second signal, or 60 s without an exit, kills them). When the
launcher itself is killed (even with SIGKILL), every process receives SIGTERM and stops
(:func:`jvae.runs.distributed.initialize_from_env`). A process that cannot reach the
coordinator within ``--init-timeout`` seconds fails with one line naming the address.
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from jvae.runs.distributed import (DEFAULT_INIT_TIMEOUT, ENV_COORDINATOR, ENV_INIT_TIMEOUT,
                                   ENV_LAUNCHER, ENV_NUM_PROCESSES, ENV_PROCESS_ID)

__all__ = ["launch", "main", "free_port"]

_DEVICE_FLAG = "--xla_force_host_platform_device_count"
_STOP_GRACE = 10.0      # seconds between SIGTERM and SIGKILL when stopping processes
_EXIT_AFTER_SIGNAL = 60.0   # seconds from a forwarded SIGINT/SIGTERM to SIGKILL
_SETTLE = 5.0           # seconds the others may take to end on their own after one failed
_EXIT_GRACE = 300.0     # seconds the others may run on after one finished cleanly (JAX's
                        # shutdown barrier holds a finished process until all arrive)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def launch(command: list[str], num_processes: int, *, devices_per_process: int | None = None,
           init_timeout: int = DEFAULT_INIT_TIMEOUT, log_dir: str | os.PathLike | None = None,
           port: int | None = None, env: dict | None = None, output=None,
           out=None) -> int:
    """Run ``command`` as ``num_processes`` processes of one JAX job; returns the exit status.

    Args:
      command: the full command of every process (``[sys.executable, "-m", "jvae.train",
        ...]``).
      num_processes: N >= 1. With 1 the command runs once, without ``jax.distributed``.
      devices_per_process: CPU devices in each process (``XLA_FLAGS``); ``None`` leaves
        ``XLA_FLAGS`` as it is.
      init_timeout: seconds each process waits for all of them to reach the coordinator.
      log_dir: where processes 1.. write their output (default: a temporary directory).
      port: coordinator port on 127.0.0.1 (default: a free one).
      env: variables added to this process's environment for every process.
      output: open file for process 0's standard output and error (default: this
        process's terminal).
      out: stream for the launcher's own lines (default ``sys.stderr``).

    Returns:
      0 when every process succeeded; else the status of the first process that failed
      (128 + signal number for a process killed by a signal).
    """
    out = out or sys.stderr
    if int(num_processes) != num_processes or num_processes < 1:
        raise ValueError(f"the number of processes must be a positive integer, got "
                         f"{num_processes!r}.")
    if devices_per_process is not None and (int(devices_per_process) != devices_per_process
                                            or devices_per_process < 1):
        raise ValueError(f"--devices-per-process must be a positive integer, got "
                         f"{devices_per_process!r}.")
    if int(init_timeout) < 1:
        raise ValueError(f"--init-timeout must be at least 1 second, got {init_timeout!r}.")
    if port is not None and not 1 <= int(port) <= 65535:
        raise ValueError(f"--port must be a TCP port in [1, 65535], got {port!r}.")
    if not command:
        raise ValueError("no command to launch: give it after --, e.g. "
                         "python -m jvae.launch -n 2 -- --config FILE.py --workdir DIR")
    address = f"127.0.0.1:{port or free_port()}"
    log_dir = pathlib.Path(log_dir or tempfile.mkdtemp(prefix="jvae-launch-"))
    if num_processes > 1:
        log_dir.mkdir(parents=True, exist_ok=True)
    devices = (f"{devices_per_process} CPU device{'s' * (devices_per_process > 1)} each"
               if devices_per_process else "their default devices")
    print(f"jvae.launch: {num_processes} process{'es' * (num_processes > 1)} with {devices}"
          + (f", coordinator {address}; process 0's output follows, processes 1-"
             f"{num_processes - 1} write to {log_dir}/process-<i>.log"
             if num_processes > 1 else ""), file=out, flush=True)
    procs, logs = [], {}
    stopping = []

    def forward(signum, frame):   # a second signal kills at once
        stopping.append(time.monotonic())
        running = [str(rank) for rank, p in enumerate(procs) if p.poll() is None]
        if running:
            print(f"jvae.launch: {signal.Signals(signum).name} received; "
                  + (f"stopping process{'es' * (len(running) > 1)} {', '.join(running)} "
                     "(a second signal kills them)" if len(stopping) == 1
                     else f"killing process{'es' * (len(running) > 1)} "
                     f"{', '.join(running)}"), file=out, flush=True)
        for p in procs:
            _signal(p, signum if len(stopping) == 1 else signal.SIGKILL)

    old = ({s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
           if threading.current_thread() is threading.main_thread() else {})
    try:
        for rank in range(num_processes):
            child = {**os.environ, **(env or {}), ENV_LAUNCHER: str(os.getpid()),
                     ENV_PROCESS_ID: str(rank),
                     ENV_NUM_PROCESSES: str(num_processes), ENV_COORDINATOR: address,
                     ENV_INIT_TIMEOUT: str(int(init_timeout))}
            if devices_per_process:
                child["XLA_FLAGS"] = _with_device_count(child.get("XLA_FLAGS", ""),
                                                        int(devices_per_process))
            stream = output
            if rank > 0:
                logs[rank] = log_dir / f"process-{rank}.log"
                stream = open(logs[rank], "w")
            try:
                procs.append(subprocess.Popen(command, env=child, stdout=stream, stderr=stream,
                                              start_new_session=True))
            except OSError as e:
                print(f"error: could not start {command[0]!r}: {e.strerror or e}", file=out)
                _stop(procs)
                return 127
            finally:
                if rank > 0:
                    stream.close()
        return _wait(procs, logs, out, stopping)
    finally:
        _stop(procs)
        for s, handler in old.items():
            signal.signal(s, handler)


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--" in argv:
        i = argv.index("--")
        own, command = argv[:i], argv[i + 1:]
    else:
        own, command = argv, []
    p = argparse.ArgumentParser(
        prog="python -m jvae.launch",
        usage="python -m jvae.launch -n N [--devices-per-process K] [--init-timeout S] "
              "[--log-dir DIR] [--port P] -- TRAIN ARGS | COMMAND",
        description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--num-processes", type=int, required=True)
    p.add_argument("--devices-per-process", type=int, default=None,
                   help="CPU devices per process (XLA_FLAGS)")
    p.add_argument("--init-timeout", type=int, default=DEFAULT_INIT_TIMEOUT,
                   help="seconds to wait for all processes to reach the coordinator")
    p.add_argument("--log-dir", default=None,
                   help="output of processes 1.. (default WORKDIR/logs)")
    p.add_argument("--port", type=int, default=None, help="coordinator port (default: free)")
    p.error = lambda message: p.exit(2, f"error: {message} (see {p.prog} --help)\n")
    args = p.parse_args(own)
    if not command:
        p.error("give the training arguments after --, e.g. "
                "-- --config experiments/configs/pytorch_example.py --workdir DIR "
                "--config.data_parallel=True")
    if command[0].startswith("-"):
        command = [sys.executable, "-m", "jvae.train", *command]
    log_dir = args.log_dir
    if log_dir is None:
        workdir = _workdir(command)
        log_dir = pathlib.Path(workdir) / "logs" if workdir else None
    try:
        return launch(command, args.num_processes, devices_per_process=args.devices_per_process,
                      init_timeout=args.init_timeout, log_dir=log_dir, port=args.port)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


# ----------------------------------------------------------------------------- private


def _with_device_count(flags: str, count: int) -> str:
    kept = [f for f in flags.split() if not f.startswith(_DEVICE_FLAG)]
    return " ".join(kept + [f"{_DEVICE_FLAG}={count}"])


def _workdir(command: list[str]) -> str | None:
    for i, arg in enumerate(command):
        if arg == "--workdir" and i + 1 < len(command):
            return command[i + 1]
        if arg.startswith("--workdir="):
            return arg.partition("=")[2]
    return None


def _signal(p: subprocess.Popen, signum: int) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every running process (and its children), SIGKILL what is left after a grace."""
    for p in procs:
        _signal(p, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            _signal(p, signal.SIGKILL)
            p.wait()


def _status(code: int) -> int:
    return 128 - code if code < 0 else code


def _wait(procs, logs, out, stopping) -> int:
    """Wait for all processes; on the first failure stop the rest and return its status."""
    first_done = None
    while True:
        codes = [p.poll() for p in procs]
        failed = [(rank, c) for rank, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            rank, code = failed[0] if stopping else _cause(procs)
            if not stopping:
                codes = [p.poll() for p in procs]
                others = [r for r, c in enumerate(codes) if c is None]
                why = (" (aborted: JAX's distributed runtime stops every process when one "
                       "does not reach the coordinator in time or another one died)"
                       if code == -signal.SIGABRT else "")
                print(f"error: process {rank} exited with status {_status(code)}{why}"
                      + (f"; stopping process{'es' * (len(others) > 1)} "
                         f"{', '.join(map(str, others))}" if others else ""),
                      file=out, flush=True)
                if rank in logs:
                    _print_tail(rank, logs[rank], out)
            _stop(procs)
            return _status(code)
        if all(c == 0 for c in codes):
            return 0
        if stopping and time.monotonic() - stopping[0] > _EXIT_AFTER_SIGNAL:
            _stop(procs)      # interrupted, but JAX's shutdown did not let them exit
            codes = [p.poll() for p in procs]
            return next((_status(c) for c in codes if c), 130)
        if first_done is None and 0 in codes:
            first_done = time.monotonic()
        if first_done is not None and time.monotonic() - first_done > _EXIT_GRACE:
            others = [r for r, c in enumerate(codes) if c is None]
            print(f"error: process {codes.index(0)} finished but process "
                  f"{', '.join(map(str, others))} still ran {_EXIT_GRACE:.0f} s later; "
                  "stopped it", file=out, flush=True)
            _stop(procs)
            return 1
        time.sleep(0.05)


def _cause(procs) -> tuple[int, int]:
    """``(rank, exit code)`` of the failure to report once one process failed unasked.

    A process stopped by SIGINT or SIGTERM (``kill`` of one process of the job) drops its
    connections, and its peers then fail at once in their collectives, sometimes before it
    has exited itself. So the others get ``_SETTLE`` seconds to end on their own (a peer
    blocked in a collective with a live process does not; the launcher stops it next), and a
    process stopped by a signal is reported as the cause, else the lowest failed rank.
    """
    deadline = time.monotonic() + _SETTLE
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.05)
    failed = [(rank, p.poll()) for rank, p in enumerate(procs) if p.poll() not in (None, 0)]
    signalled = [(rank, code) for rank, code in failed
                 if _status(code) in (128 + signal.SIGINT, 128 + signal.SIGTERM)]
    return (signalled or failed)[0]


def _print_tail(rank: int, path: pathlib.Path, out, lines: int = 15) -> None:
    try:
        with open(path, errors="replace") as f:
            tail = collections.deque((line.rstrip("\n") for line in f), maxlen=lines)
    except OSError:
        return
    print(f"last lines of {path}:", file=out)
    for line in tail:
        print(f"  [process {rank}] {line.split(chr(13))[-1]}", file=out)
    out.flush()


if __name__ == "__main__":
    sys.exit(main())
