"""Verified, atomic checkpoints of a :class:`~jvae.training.TrainState`.

Layout under the checkpoint directory::

    <epoch>/state/...            the train state, written by orbax (synchronously)
    <epoch>/jvae_manifest.json   size and SHA-256 of every file above, the epoch, and the
                                 shape and dtype of every leaf of the state

A checkpoint is written into a hidden temporary directory (``.tmp-<epoch>-<pid>``), its
manifest is written last, and the directory is renamed to ``<epoch>`` in one atomic step, so
a crash at any moment leaves either the complete checkpoint or none: a directory named like
an epoch always held a manifest when it appeared. Old checkpoints are renamed to a hidden
name before they are deleted, so a kill during a deletion never leaves a half-deleted
checkpoint under an epoch's name.

On restore every file is checked against the manifest. :meth:`Checkpointer.restore_latest`
falls back from a damaged newest checkpoint to the newest one that verifies and reports each
one it skipped and why. Typed PRNG keys are stored as their raw key data and wrapped again
on restore, so a restored run draws exactly the random numbers the uninterrupted run would.

In a multi-process job (``python -m jvae.launch``) every process calls :meth:`Checkpointer.save`
with the same (replicated or globally sharded) state: the state is brought to the host
(:func:`jvae.training.sharding.to_host`), process 0 alone writes it exactly as a single-process run
would (temporary directory, manifest, ``os.replace``), and the others wait for it and fail
with it if the write fails. Restoring needs no collective: each process reads and verifies
the checkpoint itself and gets process-local arrays (place them with
:func:`jvae.training.sharding.replicate`). So a checkpoint written by N processes restores in one,
and the other way round; all processes must see the same directory (one machine, or a shared
file system).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import time
import warnings
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from jvae.training.sharding import broadcast_flag, is_main_process, to_host
from jvae.training import TrainState

__all__ = ["Checkpointer", "CheckpointError", "CheckpointSkippedWarning", "Restored",
           "check_writable", "write_json_atomic"]

MANIFEST = "jvae_manifest.json"
_FORMAT = 1
_STATE = "state"


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged or does not fit the requested train state."""


class CheckpointSkippedWarning(UserWarning):
    """Issued when a damaged checkpoint is skipped in favour of an older one."""


class Restored(NamedTuple):
    """Result of :meth:`Checkpointer.restore_latest`.

    Attributes:
      epoch: epoch of the restored checkpoint.
      state: the restored :class:`~jvae.training.TrainState`.
      skipped: ``(epoch, reason)`` of every newer checkpoint that failed verification.
    """

    epoch: int
    state: TrainState
    skipped: list[tuple[int, str]]


class Checkpointer:
    """Save and restore train states by epoch number under ``directory``.

    Args:
      directory: where checkpoints live (created on the first save or by
        :meth:`check_writable`).
      max_to_keep: number of most recent checkpoints kept (>= 1).
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3):
        if int(max_to_keep) < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep!r}.")
        self.directory = pathlib.Path(directory).absolute()
        self.max_to_keep = int(max_to_keep)
        self._orbax = None

    # ------------------------------------------------------------------ listing

    def all_epochs(self) -> list[int]:
        """Epochs of the complete checkpoints, oldest first.

        A checkpoint is complete when its manifest is present and every file it lists exists
        with the recorded size (the cheap check; :meth:`verify` also compares the digests).
        Temporary and half-deleted directories are never listed.
        """
        return [e for e, reason in self._scan() if reason is None]

    def incomplete(self) -> list[tuple[int, str]]:
        """``(epoch, reason)`` of every epoch-named directory that is not a complete
        checkpoint (e.g. damaged by hand, or written by a jvae without manifests)."""
        return [(e, r) for e, r in self._scan() if r is not None]

    def latest_epoch(self) -> int | None:
        """Epoch of the newest complete checkpoint, or ``None``."""
        epochs = self.all_epochs()
        return epochs[-1] if epochs else None

    def verify(self, epoch: int) -> str | None:
        """``None`` if checkpoint ``epoch`` matches its manifest byte for byte, else the
        reason it does not (missing file, size or SHA-256 mismatch, unreadable manifest)."""
        path = self.directory / str(int(epoch))
        manifest, reason = _read_manifest(path)
        if reason:
            return reason
        for rel, (size, digest) in manifest["files"].items():
            file = path / rel
            try:
                actual_size = file.stat().st_size
            except OSError:
                return f"file {rel} is missing"
            if actual_size != size:
                return f"file {rel} has {actual_size} bytes, the manifest says {size}"
            if _sha256(file) != digest:
                return f"file {rel} does not match its SHA-256 (damaged on disk)"
        return None

    # ------------------------------------------------------------------ saving

    def check_writable(self) -> None:
        """Create the directory and write, sync and delete a probe file in it.

        Raises:
          OSError: naming the directory, when it cannot be created or written.
        """
        check_writable(self.directory, "checkpoint directory")

    def save(self, epoch: int, state: TrainState) -> None:
        """Write ``state`` as the verified checkpoint of ``epoch`` (replacing any checkpoint
        of that epoch) and delete checkpoints beyond ``max_to_keep``.

        Raises:
          OSError: the checkpoint could not be written (the message names the directory);
            the checkpoints already on disk are untouched.
        """
        epoch = int(epoch)
        if jax.process_count() > 1:
            self._save_from_main_process(epoch, state)
            return
        self._write(epoch, _to_storable(state))

    def _save_from_main_process(self, epoch: int, state: TrainState) -> None:
        """Multi-process save: every process calls it, process 0 writes, all agree."""
        host = to_host(_to_storable(state))          # collective if state is sharded
        error = None
        if is_main_process():
            try:
                self._write(epoch, host)    # NumPy: orbax refuses process-local jax.Arrays
            except Exception as e:  # noqa: BLE001 - re-raised below, after the others know
                error = e
        ok = broadcast_flag(error is None)
        if error is not None:
            raise error
        if not ok:
            raise OSError(errno.EIO, f"Could not write the checkpoint of epoch {epoch} in "
                                     f"{self.directory}: process 0 failed (its output says "
                                     "why).")

    def _write(self, epoch: int, storable: TrainState) -> None:
        """Write a checkpoint from this process alone (see :meth:`save`)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        tmp = self.directory / f".tmp-{epoch}-{os.getpid()}"
        try:
            tmp.mkdir()
            self._checkpointer().save(tmp / _STATE, args=ocp.args.StandardSave(storable))
            files = {str(p.relative_to(tmp)): [p.stat().st_size, _sha256(p)]
                     for p in sorted(tmp.rglob("*")) if p.is_file()}
            manifest = {"format": _FORMAT, "epoch": epoch, "time": time.time(),
                        "leaves": _leaf_specs(storable), "files": files}
            write_json_atomic(tmp / MANIFEST, manifest)
            final = self.directory / str(epoch)
            if final.exists():
                self._discard(final)
            os.replace(tmp, final)
            _fsync_dir(self.directory)
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if not isinstance(e, Exception):      # KeyboardInterrupt, SystemExit
                raise
            # orbax reports a full disk as a ValueError from tensorstore: every failure to
            # write becomes one OSError naming the checkpoint and the directory.
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            reason = " ".join(reason.split())
            if "No space left" in reason or getattr(e, "errno", None) == errno.ENOSPC:
                reason = "no space left on the device"
            raise OSError(getattr(e, "errno", None) or errno.EIO,
                          f"Could not write the checkpoint of epoch {epoch} in "
                          f"{self.directory}: {reason[:300]}") from e
        for old in self.all_epochs()[:-self.max_to_keep]:
            self._discard(self.directory / str(old))

    # ------------------------------------------------------------------ restoring

    def restore(self, template: TrainState, epoch: int | None = None) -> TrainState:
        """Restore the checkpoint of ``epoch``, or the newest one that verifies.

        Without ``epoch`` a damaged newest checkpoint is skipped with a
        :class:`CheckpointSkippedWarning` (see :meth:`restore_latest`). With ``epoch``, that
        checkpoint must verify.

        Raises:
          FileNotFoundError: no checkpoint (of that epoch) exists; the message names the
            directory and the epochs found.
          CheckpointError: the checkpoint is damaged, or holds a state of another shape than
            ``template`` (a different model or config).
        """
        if epoch is None:
            return self.restore_latest(template).state
        epoch = int(epoch)
        if not (self.directory / str(epoch)).is_dir():
            raise FileNotFoundError(f"No checkpoint of epoch {epoch} in {self.directory}; "
                                    f"checkpoints found: {self.all_epochs() or 'none'}.")
        reason = self.verify(epoch)
        if reason:
            raise CheckpointError(f"Checkpoint of epoch {epoch} in {self.directory} is damaged:"
                                  f" {reason}.")
        return self._restore(template, epoch)

    def restore_latest(self, template: TrainState, *, warn: bool = True) -> Restored:
        """Restore the newest checkpoint that verifies.

        Every newer epoch-named directory that fails verification is skipped and reported in
        ``Restored.skipped`` (and as a :class:`CheckpointSkippedWarning` when ``warn``).

        Raises:
          FileNotFoundError: there is no checkpoint at all.
          CheckpointError: no checkpoint verifies (each reason listed), or the newest intact
            one does not fit ``template``.
        """
        skipped = []
        for epoch, reason in reversed(self._scan()):
            if reason is None:
                reason = self.verify(epoch)
            if reason is None:
                state = self._restore(template, epoch)
                if warn:
                    for e, r in skipped:
                        warnings.warn(f"skipped the checkpoint of epoch {e} in "
                                      f"{self.directory}: {r}; restoring epoch {epoch}.",
                                      CheckpointSkippedWarning, stacklevel=2)
                return Restored(epoch, state, skipped)
            skipped.append((epoch, reason))
        if not skipped:
            raise FileNotFoundError(f"No checkpoint found in {self.directory}.")
        listed = "; ".join(f"epoch {e}: {r}" for e, r in skipped)
        raise CheckpointError(f"No checkpoint in {self.directory} verifies ({listed}).")

    def close(self) -> None:
        """Release orbax's resources (safe to call more than once)."""
        if self._orbax is not None:
            self._orbax.close()
            self._orbax = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ helpers

    def _checkpointer(self) -> ocp.Checkpointer:
        if self._orbax is None:   # synchronous: no background thread can outlive a failure
            # Each process reads and writes on its own (only process 0 writes, see save):
            # orbax must neither wait for the other processes nor leave the writing to
            # process 0 when process i restores.
            me = jax.process_index()
            options = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
            self._orbax = ocp.Checkpointer(
                ocp.StandardCheckpointHandler(multiprocessing_options=options),
                multiprocessing_options=options)
        return self._orbax

    def _scan(self) -> list[tuple[int, str | None]]:
        """``(epoch, None or why it is incomplete)`` of every epoch-named directory."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            if path.name.isdigit() and path.is_dir():
                manifest, reason = _read_manifest(path)
                if reason is None:
                    for rel, (size, _) in manifest["files"].items():
                        file = path / rel
                        if not file.is_file():
                            reason = f"file {rel} is missing"
                            break
                        if file.stat().st_size != size:
                            reason = f"file {rel} has {file.stat().st_size} bytes, not {size}"
                            break
                found.append((int(path.name), reason))
        return sorted(found)

    def _restore(self, template: TrainState, epoch: int) -> TrainState:
        path = self.directory / str(epoch)
        manifest, _ = _read_manifest(path)
        storable = _to_storable(template)
        expected, stored = _leaf_specs(storable), manifest.get("leaves")
        if stored is not None and stored != expected:
            raise CheckpointError(
                f"The checkpoint of epoch {epoch} in {self.directory} holds a different train "
                f"state than this run builds ({_first_difference(stored, expected)}): it was "
                "written by another model or config.")
        abstract = jax.tree.map(_local_abstract, storable)
        try:
            restored = self._checkpointer().restore(path / _STATE,
                                                    args=ocp.args.StandardRestore(abstract))
        except (ValueError, KeyError, OSError, TypeError) as e:
            raise CheckpointError(f"Could not read the checkpoint of epoch {epoch} in "
                                  f"{self.directory}: {str(e).splitlines()[0]}") from e
        restored = TrainState(*restored)
        return restored._replace(key=jax.random.wrap_key_data(restored.key))

    def _remove_leftovers(self) -> None:
        """Delete temporary and half-deleted directories a killed run left behind."""
        for path in self.directory.glob(".tmp-*"):
            shutil.rmtree(path, ignore_errors=True)
        for path in self.directory.glob(".trash-*"):
            shutil.rmtree(path, ignore_errors=True)

    def _discard(self, path: pathlib.Path) -> None:
        """Rename ``path`` to a hidden name (atomic), then delete it."""
        trash = self.directory / f".trash-{path.name}-{os.getpid()}-{time.time_ns()}"
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


def check_writable(directory: str | os.PathLike, what: str = "directory") -> None:
    """Create ``directory`` if needed and write, sync and delete a probe file in it.

    Raises:
      OSError: one line naming ``what``, the directory and the system's reason.
    """
    directory = pathlib.Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".jvae-write-test-")
        try:
            os.write(fd, b"jvae")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        raise OSError(e.errno, f"Cannot write to the {what} {directory}: "
                      f"{e.strerror or e}") from e


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to ``path`` via a synced temporary file and ``os.replace`` (never
    half-written)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------- private


def _to_storable(state: TrainState) -> TrainState:
    return state._replace(key=jax.random.key_data(state.key))


def _local_abstract(leaf: Any) -> jax.ShapeDtypeStruct:
    """What orbax restores a leaf as: its shape and dtype, on the leaf's own devices, or on
    this process's first device when the leaf spans other processes."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                    sharding=jax.sharding.SingleDeviceSharding(
                                        jax.local_devices()[0]))
    return ocp.utils.to_shape_dtype_struct(leaf)


def _leaf_specs(tree: Any) -> list[str]:
    """``"dtype[shape]"`` of every leaf, in tree order."""
    return [f"{np.dtype(leaf.dtype).name}{list(np.shape(leaf))}"
            for leaf in jax.tree.leaves(tree)]


def _first_difference(stored: list[str], expected: list[str]) -> str:
    if len(stored) != len(expected):
        return f"{len(stored)} arrays stored, {len(expected)} expected"
    i = next(i for i, (a, b) in enumerate(zip(stored, expected)) if a != b)
    return f"array {i} is {stored[i]} in the checkpoint, {expected[i]} here"


def _read_manifest(path: pathlib.Path) -> tuple[dict, str | None]:
    file = path / MANIFEST
    if not file.is_file():
        return {}, f"{MANIFEST} is missing (incomplete, damaged, or written by an older jvae)"
    try:
        manifest = json.loads(file.read_text())
        files = manifest["files"]
        if manifest.get("format") != _FORMAT or not isinstance(files, dict) or not files:
            raise ValueError("unexpected content")
        for rel, (size, digest) in files.items():
            if not isinstance(size, int) or not isinstance(digest, str):
                raise ValueError(f"bad entry for {rel}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return {}, f"{MANIFEST} is unreadable ({e})"
    return manifest, None


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: pathlib.Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
