"""Tests for jvae.runs.checkpoints and jvae.runs.lock: verified atomic checkpoints, fallback from a
damaged newest checkpoint, incomplete directories never listed, and the work-directory lock.

The states are small hand-made train states (no training), so every test takes well under a
second.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jvae.runs.checkpoints import (MANIFEST, CheckpointError, Checkpointer, CheckpointSkippedWarning,
                              check_writable)
from jvae.runs.lock import WorkdirLock, WorkdirLockedError
from jvae.training import TrainState


def _state(seed: int, width: int = 8) -> TrainState:
    key = jax.random.key(seed)
    params = {"w": jax.random.normal(key, (width, 3)), "b": jnp.arange(3.0) + seed}
    return TrainState.create(params, optax.adam(1e-3), jax.random.key(seed + 100))


def _assert_equal(a: TrainState, b: TrainState):
    a = a._replace(key=jax.random.key_data(a.key))
    b = b._replace(key=jax.random.key_data(b.key))
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture
def saved(tmp_path):
    """Checkpoints of epochs 1, 2, 3 (states of seeds 1, 2, 3)."""
    ckpt = Checkpointer(tmp_path / "checkpoints", max_to_keep=3)
    for epoch in (1, 2, 3):
        ckpt.save(epoch, _state(epoch))
    yield ckpt
    ckpt.close()


def _data_file(ckpt: Checkpointer, epoch: int) -> pathlib.Path:
    files = json.loads((ckpt.directory / str(epoch) / MANIFEST).read_text())["files"]
    big = max(files, key=lambda rel: files[rel][0])          # the array data
    return ckpt.directory / str(epoch) / big


def test_save_and_restore_round_trip_exactly(saved):
    assert saved.all_epochs() == [1, 2, 3] and saved.latest_epoch() == 3
    for epoch in (1, 2, 3):
        assert saved.verify(epoch) is None
        _assert_equal(saved.restore(_state(0), epoch), _state(epoch))
    restored = saved.restore_latest(_state(0))
    assert restored.epoch == 3 and restored.skipped == []
    _assert_equal(restored.state, _state(3))


def test_max_to_keep_deletes_the_oldest_and_leaves_no_hidden_directories(saved):
    saved.save(4, _state(4))
    assert saved.all_epochs() == [2, 3, 4]
    assert sorted(p.name for p in saved.directory.iterdir()) == ["2", "3", "4"]


@pytest.mark.parametrize("damage", ["flip_bit", "truncate", "delete_manifest",
                                    "delete_orbax_file", "garbage_manifest"])
def test_a_damaged_newest_checkpoint_is_skipped_with_its_reason(saved, damage):
    data = _data_file(saved, 3)
    if damage == "flip_bit":           # same size, one bit: only the digest can tell
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0x10
        data.write_bytes(bytes(raw))
    elif damage == "truncate":
        data.write_bytes(data.read_bytes()[:10])
    elif damage == "delete_manifest":
        (saved.directory / "3" / MANIFEST).unlink()
    elif damage == "delete_orbax_file":
        (saved.directory / "3" / "state" / "manifest.ocdbt").unlink()
    else:
        (saved.directory / "3" / MANIFEST).write_text("{not json")
    assert saved.verify(3) is not None
    with pytest.warns(CheckpointSkippedWarning, match="epoch 3"):
        restored = saved.restore_latest(_state(0))
    assert restored.epoch == 2 and [e for e, _ in restored.skipped] == [3]
    _assert_equal(restored.state, _state(2))
    with pytest.raises(CheckpointError, match="epoch 3.*damaged"):
        saved.restore(_state(0), 3)
    if damage != "flip_bit":           # size or presence checks already exclude it
        assert saved.all_epochs() == [1, 2]


def test_every_checkpoint_damaged_is_one_clear_error(saved):
    for epoch in (1, 2, 3):
        (saved.directory / str(epoch) / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="No checkpoint .* verifies.*epoch 3.*epoch 1"):
        saved.restore_latest(_state(0), warn=False)


def test_no_checkpoint_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        Checkpointer(tmp_path / "none").restore(_state(0))
    with pytest.raises(FileNotFoundError, match="epoch 7"):
        Checkpointer(tmp_path / "none").restore(_state(0), 7)


def test_a_state_of_another_shape_is_refused_naming_the_array(saved):
    with pytest.raises(CheckpointError, match=r"different train state.*float32\[8, 3\].*"
                                              r"float32\[5, 3\]"):
        saved.restore(_state(0, width=5))


def test_leftovers_of_a_killed_write_or_delete_are_never_listed(saved):
    # A kill during a write leaves a hidden temporary directory; during a deletion, a hidden
    # trash directory; an epoch-named directory without its manifest is incomplete.
    shutil.copytree(saved.directory / "3", saved.directory / ".tmp-4-12345")
    (saved.directory / ".tmp-4-12345" / MANIFEST).unlink()
    shutil.copytree(saved.directory / "1", saved.directory / ".trash-1-99-1")
    shutil.copytree(saved.directory / "3" / "state", saved.directory / "5" / "state")
    assert saved.all_epochs() == [1, 2, 3]
    assert [e for e, _ in saved.incomplete()] == [5]
    with pytest.warns(CheckpointSkippedWarning, match="epoch 5"):
        assert saved.restore_latest(_state(0)).epoch == 3
    saved.save(4, _state(4))       # the next save clears the hidden leftovers
    assert not list(saved.directory.glob(".*"))
    assert saved.all_epochs() == [2, 3, 4]


def test_saving_over_a_damaged_epoch_replaces_it(saved):
    _data_file(saved, 3).write_bytes(b"garbage")
    saved.save(3, _state(33))
    assert saved.verify(3) is None
    _assert_equal(saved.restore(_state(0), 3), _state(33))


def _make_read_only(path: pathlib.Path):
    """A directory that cannot be written, as root too (chattr +i), else skip."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)],
                                                 capture_output=True).returncode == 0:
        return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    pytest.skip("cannot make a read-only directory here (no chattr +i as root)")


def test_a_read_only_checkpoint_directory_fails_at_once_and_keeps_what_is_there(saved):
    undo = _make_read_only(saved.directory)
    try:
        with pytest.raises(OSError, match="Cannot write to the checkpoint directory"):
            saved.check_writable()
        with pytest.raises(OSError, match="Could not write the checkpoint of epoch 4"):
            saved.save(4, _state(4))
        assert saved.all_epochs() == [1, 2, 3]
    finally:
        undo()
    _assert_equal(saved.restore(_state(0)), _state(3))


def test_check_writable_names_the_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match=f"work directory {blocker / 'sub'}"):
        check_writable(blocker / "sub", "work directory")


# ----------------------------------------------------------------------------- the lock


def test_a_second_lock_on_the_same_directory_fails_at_once_naming_the_holder(tmp_path):
    with WorkdirLock(tmp_path / "run") as first:
        assert first.stale is None
        holder = json.loads((tmp_path / "run" / ".jvae.lock").read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(WorkdirLockedError, match=f"in use by another jvae run \\(PID "
                                                     f"{os.getpid()}"):
            WorkdirLock(tmp_path / "run").acquire()
    assert not (tmp_path / "run" / ".jvae.lock").exists()        # released and removed
    with WorkdirLock(tmp_path / "run"):                          # free again
        pass


def test_a_lock_held_by_another_process_is_refused(tmp_path):
    # Load jvae/runs/lock.py on its own (importing the package would start JAX: seconds).
    lock_py = pathlib.Path(__file__).resolve().parents[1] / "jvae" / "runs" / "lock.py"
    code = ("import importlib.util, sys; "
            f"spec = importlib.util.spec_from_file_location('lock', {str(lock_py)!r}); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            f"l = m.WorkdirLock({str(tmp_path / 'run')!r}).acquire(); print('held', flush=True); "
            "sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(WorkdirLockedError, match=f"PID {proc.pid}"):
            WorkdirLock(tmp_path / "run").acquire()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()
    # The kernel released the lock when that process ended; it never removed its lock file,
    # so the next run reports the lock as stale and takes it.
    with WorkdirLock(tmp_path / "run") as lock:
        assert lock.stale["pid"] == proc.pid


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_reported(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".jvae.lock").write_text(json.dumps(
        {"pid": 999999, "host": "elsewhere", "started": 0}))
    with WorkdirLock(tmp_path / "run") as lock:
        assert lock.stale["pid"] == 999999
        assert "stale lock" in lock.describe_stale() and "PID 999999" in lock.describe_stale()


def test_restore_warnings_are_not_raised_by_default_for_intact_runs(saved):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        saved.restore_latest(_state(0))
