"""SIGTERM and SIGINT stop a command promptly, whatever handlers other code installs
(jvae.cli.signals; the multi-process paths are in tests/test_launch.py).

In-process: the guard itself, and ``python -m jvae.train``'s ``main`` stopped by each signal
during training (the small gaussian2d run; its programs come from the session's XLA cache).
One subprocess: a main thread that cannot run Python handlers is ended by the guard.
"""

import ctypes
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from jvae.cli import train
from jvae.cli.signals import SignalStop, StopOnSignals, exit_status
from jvae.runs import read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBC = ctypes.CDLL(None, use_errno=True)


def _foreign_handler(signum):
    """What JAX's distributed runtime does to SIGTERM: a C-level handler replacing Python's
    (here SIG_IGN, which would swallow the signal)."""
    LIBC.signal.restype = ctypes.c_void_p
    LIBC.signal(int(signum), ctypes.c_void_p(1))       # SIG_IGN


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_raises_signal_stop_in_the_main_thread(signum):
    with pytest.raises(SignalStop) as info, StopOnSignals(str) as stop:
        os.kill(os.getpid(), signum)
        time.sleep(5)
    assert info.value.signum == signum and stop.received == signum
    assert isinstance(info.value, KeyboardInterrupt)
    assert exit_status(signum) == 128 + signum
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL        # restored afterwards


def test_a_handler_installed_later_is_replaced_by_the_guard():
    with pytest.raises(SignalStop), StopOnSignals(str, check_every=0.05):
        _foreign_handler(signal.SIGTERM)
        time.sleep(0.5)                          # the guard checks every 0.05 s
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)


def test_reinstall_replaces_a_foreign_handler_at_once():
    with pytest.raises(SignalStop), StopOnSignals(str, check_every=60) as stop:
        time.sleep(0.1)
        _foreign_handler(signal.SIGTERM)
        stop.reinstall()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)


_STUCK = textwrap.dedent("""
    import signal, sys, threading, time
    from jvae.cli.signals import StopOnSignals
    with StopOnSignals(lambda s: "error: stopped by " + signal.Signals(s).name, grace=GRACE):
        # The main thread cannot run a Python handler (as inside a long compiled call): it
        # blocks the signals and sits in one C call. "ready" comes from another thread once
        # the main thread is inside that call; printed from the main thread, a signal sent
        # on reading it could still find the main thread running bytecode, which would run
        # the handler there (SignalStop) instead of leaving the process to the guard.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        threading.Timer(0.5, lambda: print("ready", flush=True)).start()
        time.sleep(60)
    print("not stopped", flush=True)
""")


@pytest.mark.parametrize("second", [False, True], ids=["after-the-grace", "second-signal"])
def test_a_main_thread_that_cannot_stop_is_ended_by_the_guard(second):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", _STUCK.replace("GRACE", "60" if second else "1")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    if second:
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, (out, err)
    assert err.strip() == "error: stopped by SIGTERM" and "not stopped" not in out
    assert time.monotonic() - t0 < 30


@pytest.fixture
def run_until_signalled(small_g2d_config, monkeypatch, tmp_path):
    """``train.main`` of a long run; once its first epoch is recorded, ``before()`` runs (in
    another thread) and the process receives ``signum``."""
    def run(signum, before=None):
        config = small_g2d_config(num_epochs=1000, **{"dataset.limit_train": 640})
        monkeypatch.setattr(train, "load_config_file", lambda spec: config)
        workdir = tmp_path / "run"

        def send():
            deadline = time.monotonic() + 300
            while not read_metrics(workdir) and time.monotonic() < deadline:
                time.sleep(0.1)
            if before is not None:
                before()
            os.kill(os.getpid(), signum)

        threading.Thread(target=send, daemon=True).start()
        code = train.main(["--config=c.py", f"--workdir={workdir}", "--noprogress"])
        return code, workdir
    return run


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_train_stops_with_the_resume_hint_and_status(run_until_signalled, capsys, signum):
    code, workdir = run_until_signalled(signum)
    assert code == 128 + signum
    err = capsys.readouterr().err
    name = signal.Signals(signum).name
    assert err.startswith(f"error: stopped by {name}; continue with python -m jvae.train "
                          f"--workdir {workdir} --resume") and err.count("\n") == 1, err
    assert 1 <= len(read_metrics(workdir)) < 1000
    assert not (workdir / ".jvae.lock").exists()            # the lock was released


def test_train_stops_on_sigterm_whatever_handler_was_installed(run_until_signalled, capsys):
    """A C-level SIGTERM handler installed during the run (as jax.distributed does) does not
    keep the run going: the guard puts the stopping one back."""
    code, workdir = run_until_signalled(
        signal.SIGTERM, before=lambda: (_foreign_handler(signal.SIGTERM), time.sleep(1.0)))
    assert code == 143
    assert capsys.readouterr().err.startswith("error: stopped by SIGTERM")
