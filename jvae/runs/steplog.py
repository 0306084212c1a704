"""Step-level records of a training run: every step's training metrics and dev assessments.

Two files of a run's work directory, one JSON object per line, written by process 0:

* ``steps.jsonl`` (``config.eval.log_steps``): ``{"step": s, "epoch": e, "train/loss": ...,
  "train/elbo": ..., "train/distortion": ..., "train/rate": ..., ...}`` for every optimiser
  step (``s`` counts the updates made, so the first line has ``s = 1``), every entry of the
  objective's ``aux`` (control-variate loss and signal statistics too); lists over runs for a
  multi-seed run or a sweep. The compiled epoch already returns these ``[steps]`` arrays;
  they reach the host once per epoch, with the losses the guards check.
* ``dev.jsonl`` (``config.dataset.dev_size > 0``): the DPM2 notebook's ``assess`` of the
  held-out dev split, ``{"step": s, "epoch": e, "dev/elbo": ..., "dev/distortion": ...,
  "dev/rate": ..., "dev/log_likelihood": ..., "dev/seconds": ...}``, at step 0, after every
  ``config.eval.every_steps`` steps of each epoch and after its last step (or, with
  ``every_steps = 0``, at step 0 and at the end). ``e`` is fractional within an epoch.

With ``every_steps`` the epoch runs as compiled chunks of that many steps
(:func:`chunked_epoch`, built on ``make_train_epoch``'s ``plan`` and ``run_steps``): the
training arithmetic is the one-program epoch's, nothing returns to the host inside a chunk,
and each assessment is one jitted evaluator call on the device followed by one transfer of its
few scalars. Every start of a run first cuts both files back to the restored checkpoint's
step (a fresh start empties them): see :func:`jvae.runs.records.cut_records`.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jvae.training import sharding
from jvae.evaluation import make_evaluator

__all__ = ["STEPS_FILE", "DEV_FILE", "DevAssessor", "StepLog", "read_jsonl", "cut_jsonl",
           "chunks"]

STEPS_FILE = "steps.jsonl"
DEV_FILE = "dev.jsonl"
_DEV_TAG = 0x646576          # folded into the evaluation key: dev keys differ from eval's


def read_jsonl(path: str | pathlib.Path) -> list[dict]:
    """The records of a ``.jsonl`` file (empty if absent); a last line cut short (a run
    killed while appending) is dropped, a damaged earlier line is a ``ValueError``."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    out = []
    for i, line in enumerate(lines):
        try:
            out.append(json.loads(line))
        except ValueError as e:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}, line {i + 1}: not a JSON record ({e}).") from e
    return out


def chunks(num_steps: int, every: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(num_steps)`` in pieces of ``every`` steps,
    the last one shorter when ``every`` does not divide ``num_steps``."""
    return [(a, min(a + every, num_steps)) for a in range(0, num_steps, every)]


def cut_jsonl(path: str | pathlib.Path, field: str, last: int) -> list[dict]:
    """Keep only the records of ``path`` whose ``field`` is at most ``last`` (process 0; no
    other process writes records). The file is replaced atomically; it is removed when no
    record is kept. Returns the kept records."""
    path = pathlib.Path(path)
    if not sharding.is_main_process() or not path.exists():
        return []
    kept = [r for r in read_jsonl(path) if r.get(field, 0) <= last]
    if not kept:
        path.unlink()
        return kept
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    tmp.replace(path)
    return kept


def _append(path: pathlib.Path, records: list[dict]) -> None:
    if records and sharding.is_main_process():
        append_lines(path, "".join(json.dumps(r) + "\n" for r in records))


def append_lines(path: pathlib.Path, text: str) -> None:
    """Append ``text`` (whole lines) to ``path``, all or nothing: when the write fails (a
    full disk) the file is cut back to its old length, so no half line is left, and the
    ``OSError`` names the file."""
    path = pathlib.Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(text.encode())
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            reason = ("no space left on the device" if e.errno == errno.ENOSPC
                      else e.strerror or str(e))
            raise OSError(e.errno, f"Could not append to {path}: {reason}") from e
    finally:
        os.close(fd)


class StepLog:
    """Appends every step's training metrics to ``workdir/steps.jsonl``."""

    def __init__(self, workdir: pathlib.Path, enabled: bool, multi: bool):
        self.path, self.enabled, self.multi = pathlib.Path(workdir) / STEPS_FILE, enabled, multi

    def write(self, step0: int, epoch: int, aux: dict[str, np.ndarray]) -> list[dict]:
        """``aux``: ``[S]`` (or ``[runs, S]``) host arrays of the epoch that started after
        ``step0`` updates. Returns the records written (none when the log is off)."""
        if not self.enabled:
            return []
        axis = 1 if self.multi else 0
        n = aux["loss"].shape[axis]
        cols = {f"train/{k}": np.asarray(v, np.float64) for k, v in aux.items()
                if np.ndim(v) == axis + 1 and np.shape(v)[axis] == n}
        records = []
        for i in range(n):
            r: dict[str, Any] = {"step": step0 + i + 1, "epoch": epoch}
            for k, v in cols.items():
                r[k] = v[:, i].tolist() if self.multi else float(v[i])
            records.append(r)
        _append(self.path, records)
        return records


class DevAssessor:
    """The DPM2 notebook's dev assessments (D, R, ELBO and optionally the importance-sampled
    L) of a run; inactive without a dev split. See the module docstring."""

    def __init__(self, config, model, dev: np.ndarray | None, eval_keys: jax.Array,
                 multi: bool, workdir: pathlib.Path):
        self.active = dev is not None
        self.every_steps = int(config.eval.every_steps) if self.active else 0
        self.path = pathlib.Path(workdir) / DEV_FILE
        self.multi = multi
        self.epoch, self.final, self.seconds_in_epoch = 0, False, 0.0
        self.last: dict[str, Any] = {}
        self.written: list[dict] = []      # records appended since the caller last took them
        if not self.active:
            return
        if jax.process_count() > 1:
            raise ValueError("config.dataset.dev_size: dev assessments run in one process "
                             "only for now; use dev_size=0 with several processes.")
        k = int(config.eval.dev_ll_samples)
        k_final = int(config.eval.dev_final_ll_samples)
        self._samples = (k, k if k_final < 0 else k_final)
        self._data = jnp.asarray(dev)
        self._keys = (jax.vmap(lambda key: jax.random.fold_in(key, _DEV_TAG))(eval_keys)
                      if multi else jax.random.fold_in(eval_keys, _DEV_TAG))
        self._evaluators: dict[int, Any] = {}
        self._model, self._config = model, config

    def _evaluator(self, samples: int):
        if samples not in self._evaluators:
            c = self._config.eval
            fn = make_evaluator(self._model, batch_size=int(c.batch_size),
                                elbo_samples=int(c.elbo_samples),
                                ll_samples=samples if samples > 1 else 0,
                                ll_chunk=int(c.ll_chunk))
            self._evaluators[samples] = (jax.jit(jax.vmap(fn, in_axes=(0, 0, None)))
                                         if self.multi else fn)
        return self._evaluators[samples]

    def assess(self, params: Any, step: int, *, epoch: float, final: bool = False) -> dict:
        """Assess the dev split with ``params`` after ``step`` updates; appends the record
        to ``dev.jsonl`` and returns it. Its ``dev/seconds`` count the evaluation alone
        (the training dispatched before it is waited for first)."""
        jax.block_until_ready(params)
        t0 = time.perf_counter()
        keys = (jax.vmap(lambda k: jax.random.fold_in(k, step))(self._keys) if self.multi
                else jax.random.fold_in(self._keys, step))
        values = self._evaluator(self._samples[1 if final else 0])(params, keys, self._data)
        values = jax.tree.map(np.asarray, values)
        seconds = time.perf_counter() - t0
        record: dict[str, Any] = {"step": int(step), "epoch": round(float(epoch), 6)}
        add_metrics("dev", values, record)
        record["dev/seconds"] = seconds
        self.seconds_in_epoch += seconds
        _append(self.path, [record])
        self.written.append(record)
        self.last = {k: v for k, v in record.items() if k.startswith("dev/")}
        return record


def add_metrics(prefix: str, metrics: dict, record: dict) -> None:
    """Put ``metrics`` into ``record`` as ``prefix/name``: scalars as floats; per-run
    vectors as lists plus ``_mean`` and ``_std``."""
    for k, v in metrics.items():
        arr = np.asarray(v, np.float64)
        if arr.ndim == 0:
            record[f"{prefix}/{k}"] = float(arr)
        else:
            record[f"{prefix}/{k}"] = arr.tolist()
            record[f"{prefix}/{k}_mean"] = float(arr.mean())
            record[f"{prefix}/{k}_std"] = float(arr.std())


def take_steps(arr: jax.Array, start: int, stop: int, axis: int) -> jax.Array:
    """Rows ``start:stop`` of a plan array along its step axis (0, or 1 when stacked)."""
    return arr[start:stop] if axis == 0 else arr[:, start:stop]


def chunked_epoch(plan_fn, run_fns: dict, dev: DevAssessor, axis: int, num_steps: int,
                  state, data, order_key):
    """One epoch as compiled chunks of ``dev.every_steps`` steps with a dev assessment after
    each; returns ``(state, metrics, step_aux)`` like the one-program epoch. ``run_fns`` maps
    a chunk length to the compiled ``run_steps``."""
    dev.seconds_in_epoch = 0.0
    p = plan_fn(state, data, order_key)
    step0 = int(np.ravel(jax.device_get(state.step))[0])
    parts = []
    for a, b in chunks(num_steps, dev.every_steps):
        state, aux = run_fns[b - a](state, data, *(take_steps(x, a, b, axis)
                                                    for x in p.rows()))
        parts.append(aux)
        dev.assess(state.params, step0 + b, epoch=dev.epoch - 1 + b / num_steps,
                   final=dev.final and b == num_steps)
    aux = {k: jnp.concatenate([q[k] for q in parts], axis=axis) for k in parts[0]}
    metrics = {k: jnp.mean(v, axis=axis) for k, v in aux.items()}
    return state._replace(key=p.next_key), metrics, aux
