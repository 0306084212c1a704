"""Multi-process data parallelism with JAX's own runtime (``python -m jvae.launch``).

Three runs of a tiny gaussian2d VAE (512 training points, batch 64, 8 steps per epoch,
2 epochs, data_parallel), each in fresh processes:

- ``one``: one process with 4 CPU devices;
- ``two``: 2 processes x 2 CPU devices (gloo collectives between them);
- ``resumed``: ``one``'s directory cut back to epoch 1, resumed by 2 processes x 2 devices.

All three must end with the same parameters (same 4-device mesh, same global batches), the
2-process checkpoints must restore in this (single) process, and only process 0 may write.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time

import jax
import numpy as np
import pytest

from jvae.cli import launch
from jvae.runs import distributed

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN_ARGS = [
    "--config", str(ROOT / "experiments/configs/gaussian2d.py"), "--noprogress",
    "--config.data_parallel=True", "--config.num_epochs=2", "--config.checkpoint_every=1",
    "--config.dataset.limit_train=512", "--config.dataset.limit_eval=256",
    "--config.batch_size=64", "--config.eval.batch_size=256", "--config.eval.ll_samples=0",
    "--config.model.encoder_hidden=(16,)", "--config.model.decoder_hidden=(16,)",
    "--config.figures=False",
]


def _launch(n: int, devices: int, workdir: pathlib.Path, *extra: str) -> str:
    """Run ``python -m jvae.train`` as ``n`` processes x ``devices`` CPU devices through
    :func:`jvae.launch.launch` (in this process: no extra interpreter); returns process 0's
    output. The children share this session's XLA compilation cache (tests/conftest.py)."""
    log = workdir.parent / f"{workdir.name}-process-0.log"
    env = _child_env()
    command = [sys.executable, "-m", "jvae.train", *TRAIN_ARGS, "--workdir", str(workdir),
               *extra]
    with open(log, "w") as output:
        code = launch.launch(command, n, devices_per_process=devices, init_timeout=60,
                             log_dir=workdir / "logs", env=env, output=output)
    out = log.read_text()
    assert code == 0, f"{n} x {devices} failed ({code}):\n{out[-3000:]}"
    return out


def _child_env() -> dict:
    """What the processes of a job get: this repository, the compile level and the
    session's XLA cache (tests/conftest.py)."""
    return {"PYTHONPATH": str(ROOT), "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
            "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir or "",
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.2",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``one``: 1 process x 4 devices, from scratch. ``two``: this (single) process writes
    the initial state as the checkpoint of epoch 0, then 2 processes x 2 devices resume from
    it and train both epochs (so the single-process checkpoint is restored by 2 processes)."""
    from jvae.runs.checkpoints import Checkpointer, write_json_atomic
    from jvae.runs.overrides import normalised
    from jvae.runs.setup import build_run, initial_state
    from jvae.cli.train import build_config, parse_args

    base = tmp_path_factory.mktemp("launch")
    one, two = base / "one", base / "two"
    config = build_config(*parse_args([*TRAIN_ARGS, "--workdir", str(two)]))
    datasets, model, optimizer = build_run(config)
    init = initial_state(config, model, optimizer, datasets.train[:1])
    write_json_atomic(two / "config.json", normalised(config))
    with Checkpointer(two / "checkpoints") as ckpt:
        ckpt.save(0, init)
    t0 = time.perf_counter()
    out = {"one": _launch(1, 4, one)}
    t1 = time.perf_counter()
    out["two"] = _launch(2, 2, two, "--resume")
    print(f"1 x 4 devices: {t1 - t0:.1f} s, 2 x 2 devices: {time.perf_counter() - t1:.1f} s")
    return {"one": one, "two": two, "out": out, "init": init}


def _restore(workdir, template, epoch):
    from jvae.runs.checkpoints import Checkpointer

    with Checkpointer(workdir / "checkpoints") as ckpt:    # in this single process
        return ckpt.restore(template, epoch)


def _assert_same_state(got, ref):
    assert int(got.step) == int(ref.step)
    np.testing.assert_array_equal(jax.random.key_data(got.key), jax.random.key_data(ref.key))
    for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(got.params), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(ref.opt_state), jax.tree.leaves(got.opt_state),
                    strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-8)


def test_two_processes_end_with_the_parameters_of_one_process_on_four_devices(runs):
    assert jax.process_count() == 1
    init = runs["init"]
    for epoch in (1, 2):     # both written by 2 processes, restored here in one
        ref, got = _restore(runs["one"], init, epoch), _restore(runs["two"], init, epoch)
        assert int(got.step) == 8 * epoch
        _assert_same_state(got, ref)
    moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(init.params)))
    assert moved > 1e-3      # training moved the parameters: not the initial state's equality


def test_single_process_checkpoint_restores_in_two_processes(runs):
    # Epoch 0 was written here (one process, one device); the 2-process run resumed from it.
    assert "done: epoch 2, step 16" in runs["out"]["two"]
    assert sorted(p.name for p in (runs["two"] / "checkpoints").iterdir()) == ["0", "1", "2"]
    _assert_same_state(_restore(runs["two"], runs["init"], 0), runs["init"])


def test_only_process_zero_writes(runs):
    records = {}
    for name in ("one", "two"):
        records[name] = [json.loads(line) for line in
                         (runs[name] / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in records[name]] == [1, 2], name    # not written twice
        assert not (runs[name] / ".jvae.lock").exists()
    np.testing.assert_allclose([r["train/loss"] for r in records["two"]],
                               [r["train/loss"] for r in records["one"]], rtol=1e-5)
    log = (runs["two"] / "logs" / "process-1.log").read_text()
    assert "done: epoch 2, step 16" in log and "error" not in log


def test_launcher_stops_the_others_and_returns_the_failed_status(tmp_path, capfd):
    script = ("import os, sys, time\n"
              "rank = int(os.environ['JVAE_PROCESS_ID'])\n"
              "print('rank', rank, 'of', os.environ['JVAE_NUM_PROCESSES'], flush=True)\n"
              "time.sleep(120) if rank == 0 else sys.exit(3)\n")
    t0 = time.perf_counter()
    code = launch.main(["-n", "2", "--log-dir", str(tmp_path), "--", sys.executable, "-c",
                        script])
    assert code == 3
    assert time.perf_counter() - t0 < 30        # process 0 (sleeping 120 s) was stopped
    out, err = capfd.readouterr()
    assert "error: process 1 exited with status 3; stopping process 0" in err
    assert "[process 1] rank 1 of 2" in err
    assert "rank 0 of 2" in out


def test_a_signalled_process_is_reported_before_the_peers_that_lost_it(tmp_path, capfd):
    """Process 1 is stopped by SIGTERM a moment after process 0 failed (as a peer fails on
    the lost connection before the signalled process has exited): the job's status is 143."""
    script = ("import os, signal, sys, time\n"
              "rank = int(os.environ['JVAE_PROCESS_ID'])\n"
              "sys.exit(1) if rank == 0 else (time.sleep(1.0), "
              "os.kill(os.getpid(), signal.SIGTERM), time.sleep(60))\n")
    code = launch.main(["-n", "2", "--log-dir", str(tmp_path), "--", sys.executable, "-c",
                        script])
    assert code == 143
    assert "error: process 1 exited with status 143" in capfd.readouterr().err


def test_launcher_usage_errors():
    with pytest.raises(SystemExit) as e:
        launch.main(["-n", "2"])
    assert e.value.code == 2
    with pytest.raises(ValueError, match="positive integer"):
        launch.launch(["true"], 0)
    with pytest.raises(ValueError, match="devices-per-process"):
        launch.launch(["true"], 2, devices_per_process=0)
    with pytest.raises(ValueError, match=r"--port must be a TCP port in \[1, 65535\]"):
        launch.launch(["true"], 2, port=70000)


def test_initialize_from_env_checks_its_variables():
    assert distributed.initialize_from_env({}) is False
    assert distributed.initialize_from_env({"JVAE_NUM_PROCESSES": "1"}) is False
    env = {"JVAE_NUM_PROCESSES": "2", "JVAE_PROCESS_ID": "2", "JVAE_COORDINATOR": "h:1"}
    with pytest.raises(ValueError, match="JVAE_PROCESS_ID=2 must be below JVAE_NUM_PROCESSES=2"):
        distributed.initialize_from_env(env)
    with pytest.raises(ValueError, match="JVAE_PROCESS_ID is not set"):
        distributed.initialize_from_env({"JVAE_NUM_PROCESSES": "2"})
    with pytest.raises(ValueError, match="JVAE_NUM_PROCESSES='two' is not an integer"):
        distributed.initialize_from_env({"JVAE_NUM_PROCESSES": "two"})
    with pytest.raises(ValueError, match="must be HOST:PORT"):
        distributed.initialize_from_env({**env, "JVAE_PROCESS_ID": "1", "JVAE_COORDINATOR": "nope"})


def test_unreachable_coordinator_is_one_clear_error():
    port = launch.free_port()      # nothing listens there
    env = {"JVAE_NUM_PROCESSES": "2", "JVAE_PROCESS_ID": "1",
           "JVAE_COORDINATOR": f"127.0.0.1:{port}", "JVAE_INIT_TIMEOUT": "1"}
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match=rf"process 1 of 2 could not reach the coordinator "
                                           rf"at 127.0.0.1:{port} within 1 s"):
        distributed.initialize_from_env(env)
    assert time.perf_counter() - t0 < 10


# ------------------------------------------------------------- signals and a killed launcher


def _job_processes(launcher_pid: int) -> list[int]:
    """Processes started by the launcher ``launcher_pid`` (their environment names it)."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"JVAE_LAUNCHER_PID={launcher_pid}".encode() in environ and stat != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("action", ["SIGTERM to the launcher",
                                    pytest.param("SIGTERM to process 1",
                                                 marks=pytest.mark.exhaustive),
                                    pytest.param("SIGKILL to the launcher",
                                                 marks=pytest.mark.exhaustive)])
def test_a_signalled_job_stops_every_process(tmp_path, action):
    """A long 2-process run, signalled once its first epoch is recorded: both processes end
    within 60 s with the resume hint; the launcher exits with 143 (or dies, for SIGKILL)."""
    import signal
    import subprocess

    workdir = tmp_path / "run"
    env = dict(os.environ, **_child_env())
    args = [a for a in TRAIN_ARGS if not a.startswith("--config.num_epochs")]
    launcher = subprocess.Popen(
        [sys.executable, "-m", "jvae.launch", "-n", "2", "--devices-per-process", "1",
         "--init-timeout", "120", "--", *args, "--config.num_epochs=100000",
         "--workdir", str(workdir)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 400
        while not (workdir / "metrics.jsonl").is_file() or not (
                workdir / "metrics.jsonl").read_text().strip():
            assert launcher.poll() is None and time.monotonic() < deadline, \
                launcher.communicate(timeout=30)
            time.sleep(0.2)
        workers = _job_processes(launcher.pid)
        assert len(workers) == 2
        t0 = time.monotonic()
        if action == "SIGTERM to the launcher":
            launcher.send_signal(signal.SIGTERM)
        elif action == "SIGTERM to process 1":
            os.kill(max(workers), signal.SIGTERM)    # started second: process 1
        else:
            launcher.kill()
        out, err = launcher.communicate(timeout=120)
        while _job_processes(launcher.pid) and time.monotonic() - t0 < 60:
            time.sleep(0.2)
        seconds = time.monotonic() - t0
        assert _job_processes(launcher.pid) == [], "a process of the job outlived it"
    finally:
        for pid in _job_processes(launcher.pid):
            os.kill(pid, signal.SIGKILL)
        if launcher.poll() is None:
            launcher.kill()
    assert seconds < 60
    hint = f"stopped by SIGTERM; continue with python -m jvae.train --workdir {workdir} --resume"
    logged = (workdir / "logs" / "process-1.log").read_text()
    assert hint in logged, logged[-2000:]
    if action == "SIGKILL to the launcher":
        assert launcher.returncode == -signal.SIGKILL
        assert hint in err, err[-2000:]                  # process 0 shares the terminal
    else:
        assert launcher.returncode == 143, err[-2000:]
        assert hint in err, err[-2000:]
    if action == "SIGTERM to the launcher":
        assert "jvae.launch: SIGTERM received; stopping processes 0, 1" in err
    epochs = [r["epoch"] for r in
              (json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines())]
    assert 1 <= len(epochs) < 100000
