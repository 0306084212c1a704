"""Runs that never hang, never mix and never restore garbage (jvae.runs.loop, jvae.train).

Faults of whole runs on the small 2-D Gaussian config: a damaged newest checkpoint, a kill
during a checkpoint write, a resume that would change the model, two runs in one work
directory, a read-only or full checkpoint directory, a finite divergence; and the command
line's one-line config errors. One subprocess (the kill); everything else in-process.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jvae.runs import loop as experiment
from jvae.cli import train
from jvae.runs.checkpoints import MANIFEST, Checkpointer
from jvae.runs.overrides import normalised
from jvae.runs import read_metrics, restore_run, train_and_evaluate
from jvae.training.guards import DivergenceError, first_divergent_step
from jvae.runs.lock import WorkdirLock, WorkdirLockedError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _params(workdir) -> list[np.ndarray]:
    """Every array of the newest train state: parameters, optimiser state, step, key."""
    state = restore_run(workdir, log=print)[3]
    state = state._replace(key=jax.random.key_data(state.key))
    return [np.asarray(x) for x in jax.tree.leaves(state)]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def config(small_g2d_config):
    return lambda **changes: small_g2d_config(**{"num_epochs": 3, "checkpoint_every": 1,
                                                 **changes})


@pytest.fixture(scope="module")
def reference(tmp_path_factory, config):
    """Three uninterrupted epochs, a checkpoint after each."""
    workdir = tmp_path_factory.mktemp("reference")
    train_and_evaluate(config(), workdir, progress=False)
    return workdir, _params(workdir)


def _copy_run(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------ damaged and killed runs


def test_a_damaged_newest_checkpoint_falls_back_and_ends_like_the_uninterrupted_run(
        reference, config, tmp_path):
    workdir = _copy_run(reference[0], tmp_path / "run")
    files = json.loads((workdir / "checkpoints/3" / MANIFEST).read_text())["files"]
    data = workdir / "checkpoints/3" / max(files, key=lambda rel: files[rel][0])
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 3] ^= 0x01                          # one flipped bit, same size
    data.write_bytes(bytes(raw))
    lines = []
    train_and_evaluate(config(), workdir, resume=True, progress=False, log=lines.append)
    assert any("skipped the checkpoint of epoch 3" in line and "SHA-256" in line
               and "using epoch 2" in line for line in lines), lines
    _assert_same(_params(workdir), reference[1])
    assert [r["epoch"] for r in read_metrics(workdir)] == [1, 2, 3]
    assert Checkpointer(workdir / "checkpoints").verify(3) is None     # rewritten intact


def test_kill_during_a_checkpoint_write_then_resume_is_identical(reference, config, tmp_path):
    """SIGKILL after the state files of epoch 2 are written, before its manifest."""
    workdir = tmp_path / "run"
    (tmp_path / "config.json").write_text(json.dumps(normalised(config())))
    script = textwrap.dedent(f"""
        import os, signal
        from jvae.runs import checkpoints
        from jvae.runs.overrides import config_from_json
        from jvae.runs import train_and_evaluate
        real = checkpoints.write_json_atomic
        def write(path, obj):
            if path.name == checkpoints.MANIFEST and obj["epoch"] == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, obj)
        checkpoints.write_json_atomic = write
        train_and_evaluate(config_from_json({str(tmp_path / 'config.json')!r}),
                           {str(workdir)!r}, progress=False)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    ckpts = workdir / "checkpoints"
    assert [p.name for p in ckpts.glob(".tmp-2-*")], list(ckpts.iterdir())   # half-written
    assert Checkpointer(ckpts).all_epochs() == [1]
    assert json.loads((workdir / ".jvae.lock").read_text())["pid"] != os.getpid()   # stale
    lines = []
    train_and_evaluate(config(), workdir, resume=True, progress=False, log=lines.append)
    assert any("stale lock" in line for line in lines), lines
    _assert_same(_params(workdir), reference[1])
    assert not list(ckpts.glob(".tmp-*"))
    assert [r["epoch"] for r in read_metrics(workdir)] == [1, 2, 3]


# ------------------------------------------------------------------------------ resume


def test_a_metrics_line_cut_short_by_a_kill_is_dropped_on_resume(reference, config, tmp_path):
    workdir = _copy_run(reference[0], tmp_path / "run")
    with open(workdir / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 4, "train/lo')                 # the kill hit mid-line
    assert [r["epoch"] for r in read_metrics(workdir)] == [1, 2, 3]
    train_and_evaluate(config(num_epochs=4), workdir, resume=True, progress=False)
    assert [r["epoch"] for r in read_metrics(workdir)] == [1, 2, 3, 4]
    (workdir / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n{"epoch": 3}\n')
    with pytest.raises(ValueError, match="metrics.jsonl, line 2"):
        read_metrics(workdir)


def test_resume_refuses_a_changed_model_optimiser_or_data_and_keeps_config_json(
        reference, config, tmp_path):
    workdir = _copy_run(reference[0], tmp_path / "run")
    before = (workdir / "config.json").read_bytes()
    for changes, field in [({"learning_rate": 0.1}, "learning_rate"),
                           ({"latent_dim": 3}, "latent_dim"),
                           ({"batch_size": 32}, "batch_size"),
                           ({"dataset.mode": "multivariate"}, "dataset.mode"),
                           ({"num_epochs": 2}, "num_epochs")]:
        with pytest.raises(ValueError, match=f"--resume would change {field}"):
            train_and_evaluate(config(**changes), workdir, resume=True, progress=False)
        assert (workdir / "config.json").read_bytes() == before
    _assert_same(_params(workdir), reference[1])        # still usable by jvae.evaluate


def test_resume_without_config_reads_config_json_and_allows_evaluation_changes(
        reference, tmp_path, capsys):
    workdir = _copy_run(reference[0], tmp_path / "run")
    assert train.main([f"--workdir={workdir}", "--resume", "--noprogress",
                       "--config.num_epochs=4", "--config.eval.every=2"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("done: epoch 4") and "resuming with eval.every (1 -> 2)" in err
    stored = json.loads((workdir / "config.json").read_text())
    assert stored["num_epochs"] == 4 and stored["eval"]["every"] == 2
    assert train.main([f"--workdir={workdir}", "--resume", "--noprogress",
                       "--config.learning_rate=0.5"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


# ------------------------------------------------------------------- locks, disks, guards


def test_a_second_run_in_a_locked_directory_fails_at_once_and_writes_nothing(
        reference, config, tmp_path):
    workdir = _copy_run(reference[0], tmp_path / "run")
    metrics = (workdir / "metrics.jsonl").read_bytes()
    with WorkdirLock(workdir):                      # the first run, still alive
        with pytest.raises(WorkdirLockedError, match=f"PID {os.getpid()}"):
            train_and_evaluate(config(num_epochs=5), workdir, resume=True, progress=False)
    assert (workdir / "metrics.jsonl").read_bytes() == metrics


def _chattr(path, flag):
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def test_a_read_only_checkpoint_directory_fails_before_training(config, tmp_path, capsys,
                                                                monkeypatch):
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    if os.geteuid() == 0:
        if not (shutil.which("chattr") and _chattr(ckpts, "+i")):
            pytest.skip("chattr +i is not available")
    else:
        ckpts.chmod(0o555)
    try:
        monkeypatch.setattr(train, "load_config_file", lambda spec: config())
        assert train.main(["--config=c.py", f"--workdir={tmp_path / 'run'}",
                           "--noprogress"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: Cannot write to the checkpoint directory") and \
            err.count("\n") == 1, err
        assert not (tmp_path / "run" / "metrics.jsonl").exists()   # no epoch was trained
        assert not (tmp_path / "run" / ".jvae.lock").exists()      # the lock was released
    finally:
        if os.geteuid() == 0:
            _chattr(ckpts, "-i")


@pytest.mark.parametrize("when", ["before training", "at the first save"])
def test_a_full_disk_ends_the_run_with_one_line_and_releases_the_lock(when, config, tmp_path,
                                                                      capsys, monkeypatch):
    if when == "at the first save":      # without the free-space check the save itself fails
        monkeypatch.setattr(experiment, "check_space", lambda ckpt, state: None)
    mount = tmp_path / "small"
    mount.mkdir()
    # 160 KB hold the run's files and one checkpoint (about 96 KB), never two (256 KB held all
    # three of them with jax 0.12, so the run ended normally there).
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        # No step log: the checkpoints, not the growing steps.jsonl, fill the disk.
        monkeypatch.setattr(train, "load_config_file",
                            lambda spec: config(**{"eval.log_steps": False}))
        assert train.main(["--config=c.py", f"--workdir={mount / 'run'}", "--noprogress"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1, err
        ckpt = Checkpointer(mount / "run" / "checkpoints")
        if when == "before training":
            assert "Not enough disk space for checkpoints" in err, err
            assert not (mount / "run" / "metrics.jsonl").exists()
        else:
            assert "Could not write the checkpoint of epoch" in err, err
            assert "no space left on the device" in err, err
            assert ckpt.all_epochs() and all(ckpt.verify(e) is None for e in ckpt.all_epochs())
        assert not list(ckpt.directory.glob(".*"))        # no partial checkpoint left
        assert not (mount / "run" / ".jvae.lock").exists()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_finite_divergence_stops_naming_the_step(config, tmp_path):
    with pytest.raises(DivergenceError, match=r"diverged at epoch 1, step \d+ .*"
                                              r"config.divergence.(factor|max_loss)") as info:
        train_and_evaluate(config(learning_rate=1.0), tmp_path, progress=False)
    assert info.value.loss > 100 and "no checkpoint had been written yet" in str(info.value)
    assert Checkpointer(tmp_path / "checkpoints").all_epochs() == []


def test_first_divergent_step_against_the_running_minimum():
    losses = [10.0, 8.0, 9.0, 800.0, 50000.0]
    step, reason = first_divergent_step(losses, np.inf, factor=100, max_loss=0)
    assert step == 4 and "100 times" in reason          # 50000 > 8 + 100 * 8; 800 is not
    assert first_divergent_step(losses, np.inf, factor=0, max_loss=0) is None
    assert first_divergent_step(losses, np.inf, factor=0, max_loss=1000)[0] == 4
    assert first_divergent_step([2.0e33], 90.0, factor=100, max_loss=1e10)[0] == 0
    # With patience, a spike that recovers is no divergence; a sustained rise is, from its
    # first step.
    spike = [10.0, 9.0, 5000.0, 5000.0, 9.0, 8.0, 5000.0, 5000.0, 5000.0, 7.0]
    assert first_divergent_step(spike, np.inf, factor=100, max_loss=0, patience=3)[0] == 6
    assert first_divergent_step(spike, np.inf, factor=100, max_loss=0, patience=4) is None
    # Negative losses (Gaussian likelihoods): the margin is relative to |m|.
    assert first_divergent_step([-2000.0, -1500.0, 190000.0], np.inf, factor=100,
                                max_loss=0) is None
    assert first_divergent_step([-2000.0, 210000.0], np.inf, factor=100, max_loss=0)[0] == 1
    assert first_divergent_step([np.nan, 1e20], np.inf, factor=100, max_loss=0) is None


# ------------------------------------------------------------------- command-line errors


@pytest.mark.parametrize("args, expected", [
    (["--config.model.likelihod=gaussian"], "did you mean --config.model.likelihood"),
    (["--config.foo=1"], "unknown config field --config.foo"),
    (["--config.batch_size=big"], "expected an integer"),
    (["--config.model=mlp"], "group of fields"),
    (["--config.num_epochs"], "needs a value"),
    (["--config.seed=36893488147419103232"], "config.seed must lie in [0, 2**32)"),
    (["--config.seed=4294967296"], "config.seed must lie in [0, 2**32)"),
    (["--config.divergence.factor=-1"], "config.divergence.factor"),
])
def test_config_mistakes_are_one_line_errors(args, expected, tmp_path, capsys):
    code = train.main([f"--config={ROOT / 'experiments/configs/gaussian2d.py'}",
                       f"--workdir={tmp_path / 'run'}", "--noprogress", *args])
    err = capsys.readouterr().err
    assert code in (1, 2) and err.startswith("error:") and err.count("\n") == 1, err
    assert expected in err, err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("body, expected", [
    ("def get_config():\n    return {'seed': 0}\n", "returned a dict, not an ml_collections"),
    ("x = 1\n", "does not define get_config()"),
    ("def get_config(:\n", "failed to load: SyntaxError"),
    ("def get_config():\n    raise RuntimeError('boom')\n", "failed: RuntimeError: boom"),
])
def test_broken_config_files_are_one_line_errors(body, expected, tmp_path, capsys):
    path = tmp_path / "my_config.py"
    path.write_text(body)
    assert train.main([f"--config={path}", f"--workdir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and expected in err, err


def test_empty_workdir_and_missing_config_are_usage_errors(tmp_path, capsys):
    gaussian = f"--config={ROOT / 'experiments/configs/gaussian2d.py'}"
    assert train.main([gaussian, "--workdir="]) == 2
    assert "--workdir is empty" in capsys.readouterr().err
    assert train.main([f"--workdir={tmp_path}"]) == 2
    assert "--config FILE.py is required" in capsys.readouterr().err
    assert train.main([f"--workdir={tmp_path}", "--resume"]) == 2
    assert "config.json" in capsys.readouterr().err


def test_debug_adds_the_traceback(tmp_path, capsys):
    assert train.main([f"--config={ROOT / 'experiments/configs/gaussian2d.py'}",
                       f"--workdir={tmp_path / 'run'}", "--config.foo=1", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error:")


def test_parameter_groups_are_settable_from_the_command_line(tmp_path):
    args, overrides = train.parse_args([f"--config={ROOT / 'experiments/configs/gaussian2d.py'}",
                                        f"--workdir={tmp_path}",
                                        "--config.optim.param_groups.encoder=1e-4",
                                        "--config.optim.param_groups.decoder", "3e-4"])
    config = train.build_config(args, overrides)
    assert dict(config.optim.param_groups) == {"encoder": 1e-4, "decoder": 3e-4}
