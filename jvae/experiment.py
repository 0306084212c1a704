"""A whole training run: data, model, jitted epochs, evaluation, metrics, checkpoints, figures.

``train_and_evaluate(config, workdir)`` is what ``python -m jvae.train`` runs. The work
directory receives ``config.json``, ``metrics.jsonl`` (one JSON object per epoch),
``checkpoints/`` and PNG figures. With ``resume=True`` the run continues from the newest
checkpoint and ends with exactly the parameters an uninterrupted run would have: the train
state carries its PRNG key and evaluation keys are derived from the epoch number.

With ``config.num_seeds = N > 1`` the N seeds ``seed .. seed + N - 1`` train as one program:
the train state is stacked over seeds and the epoch is vmapped; all seeds see the same batches
(the batch order comes from ``dataset.order_seed``, default ``seed``), so seed ``i`` of such a
run equals a single-seed run with ``seed = seed + i`` and ``dataset.order_seed = seed``.
Metrics hold per-seed lists plus ``_mean`` and ``_std``.

A sweep (``config.sweep.beta`` and/or ``config.sweep.learning_rate``, tuples of values) runs
one model per value as one vmapped program in the same way: beta enters the loss as a traced
value, learning rates live in the optimiser state (``optax.inject_hyperparams``); every model
starts from ``config.seed``. Element ``i`` equals a single run with those hyperparameters.
"""

from __future__ import annotations

import functools
import json
import pathlib
import shutil
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from jvae import builders, plotting, sharding, steplog
from jvae.checkpoints import Checkpointer, check_writable, write_json_atomic
from jvae.config_io import config_from_json, normalised, resume_differences
from jvae.evaluation import make_evaluator
from jvae.autoencoder import PointHead
from jvae.guards import DivergenceError, first_divergent_step
from jvae.data import uncentre
from jvae.inspection import (conditional_observations, interpolate_latents, prior_observations,
                             prior_samples_with_components)
from jvae.lock import WorkdirLock
from jvae.model import VAE, init_params, reconstruct, sample_prior
from jvae.objectives.base import as_objective
from jvae.training import (NonFiniteLossError, TrainState, first_non_finite, make_train_epoch,
                           set_learning_rate)

__all__ = ["train_and_evaluate", "read_metrics", "write_figures", "restore_run"]

METRICS_FILE = "metrics.jsonl"


def read_metrics(workdir: str | pathlib.Path) -> list[dict]:
    """The per-epoch records of ``workdir/metrics.jsonl`` (empty list if absent).

    A last line cut short (a run killed while appending it) is dropped; a damaged line
    before it is a ``ValueError`` naming the file and the line.
    """
    return steplog.read_jsonl(pathlib.Path(workdir) / METRICS_FILE)


def _write_metrics(workdir: pathlib.Path, records: list[dict]) -> None:
    if not sharding.is_main_process():   # multi-process: process 0 writes
        return
    path = workdir / METRICS_FILE
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(path)


def _append_metrics(workdir: pathlib.Path, record: dict) -> None:
    if not sharding.is_main_process():
        return
    steplog.append_lines(workdir / METRICS_FILE, json.dumps(record) + "\n")


def _keys(seed: int):
    init_key, train_key, eval_key, figure_key = jax.random.split(jax.random.key(seed), 4)
    return init_key, train_key, eval_key, figure_key


def _setup(config: ml_collections.ConfigDict):
    builders.validate_config(config)
    datasets = builders.load_data(config)
    model = builders.build_model(config, datasets.train.shape[1:])
    steps = len(datasets.train) // int(config.batch_size)
    if steps == 0:
        raise ValueError(f"config.batch_size {config.batch_size} is larger than the training "
                         f"set ({len(datasets.train)} examples).")
    optimizer = builders.build_optimizer(config, steps_per_epoch=steps)
    return datasets, model, optimizer


def _initial_state(config, model, optimizer, x_example) -> TrainState:
    """The train state of seed ``config.seed``; with ``num_seeds > 1`` the states of seeds
    ``seed .. seed + num_seeds - 1``, and for a sweep one state per swept value (all from
    ``config.seed``, with their own learning rate), stacked along a leading axis by ``vmap``."""
    objective = as_objective(builders.build_loss(config, model))

    def create(init_key, train_key):
        est = objective.init(jax.random.fold_in(init_key, 1), jnp.asarray(x_example))
        return TrainState.create(init_params(model, init_key, x_example), optimizer, train_key,
                                 est)

    sweep = builders.sweep_values(config)
    keys = [_keys(s) for s in _seeds(config)]
    if sweep is None and len(keys) == 1:
        return create(keys[0][0], keys[0][1])
    state = jax.jit(jax.vmap(create))(jnp.stack([k[0] for k in keys]),
                                      jnp.stack([k[1] for k in keys]))
    if sweep is not None and config.sweep.learning_rate:
        state = state._replace(opt_state=set_learning_rate(state.opt_state,
                                                           sweep["learning_rate"]))
    return state


def _seeds(config) -> list[int]:
    """The seed of every element of the run's leading axis (a sweep repeats ``seed``)."""
    sweep = builders.sweep_values(config)
    if sweep is not None:
        return [int(config.seed)] * len(sweep["beta"])
    return [int(config.seed) + i for i in range(int(config.num_seeds))]


def _labels(config) -> list[str]:
    sweep = builders.sweep_values(config)
    if sweep is None:
        return [f"seed {s}" for s in _seeds(config)]
    return [f"sweep element {i} (beta={b:g}, learning_rate={lr:g})"
            for i, (b, lr) in enumerate(zip(sweep["beta"], sweep["learning_rate"]))]


def _order_key(config, epoch: int, runs: int = 0) -> jax.Array:
    """Batch-order key of an epoch, the same for all seeds of a run (see make_train_epoch).

    With ``runs > 0`` the key is repeated into a ``[runs]`` stack that the vmapped epoch takes
    along the run axis: every run then gathers its own (identical) batch, so each layer is a
    batched product over the runs. Passing one shared key instead makes the batch unbatched
    and the first layer one wide product ``x @ [W_1 .. W_S]``, which on the CPU costs three
    weight-sized transposes per step (forward, and the gradient into both Adam moments) and
    made the vmapped epoch about 5% slower.
    """
    base = int(config.dataset.order_seed)
    key = jax.random.fold_in(jax.random.key(base if base >= 0 else int(config.seed)), epoch)
    return jnp.stack([key] * runs) if runs else key


def _record(prefix: str, metrics: dict, record: dict) -> None:
    """Scalars as floats; per-seed vectors as lists plus ``_mean`` and ``_std``."""
    steplog.add_metrics(prefix, metrics, record)


def _scalar(record: dict, key: str) -> float:
    return record.get(f"{key}_mean", record.get(key, float("nan")))


def restore_run(workdir: str | pathlib.Path, epoch: int | None = None, *,
                log: Callable[[str], None] | None = None):
    """Rebuild a finished or interrupted run from its work directory.

    Without ``epoch`` the newest checkpoint that verifies is restored; each newer damaged
    one is skipped with a line to ``log`` (default: standard error) saying why.

    Returns:
      ``(config, datasets, model, state)`` with the state of the newest (or given) checkpoint
      (stacked over seeds for a multi-seed run).

    Raises:
      FileNotFoundError: ``workdir`` holds no ``config.json`` or no checkpoint.
      jvae.checkpoints.CheckpointError: no checkpoint verifies, or it does not fit the
        stored config.
    """
    workdir = pathlib.Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(
            f"{config_path} not found: {workdir} is not a jvae run directory (train one with "
            "python -m jvae.train --config ... --workdir DIR).")
    config = config_from_json(config_path)
    datasets, model, optimizer = _setup(config)
    template = _initial_state(config, model, optimizer, datasets.train[:1])
    ckpt = Checkpointer(workdir / "checkpoints")
    if epoch is None:
        restored = ckpt.restore_latest(template, warn=False)
        _report_skipped(restored.skipped, restored.epoch, ckpt, log or _stderr)
        state = restored.state
    else:
        state = ckpt.restore(template, epoch)
    return config, datasets, model, state


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _report_skipped(skipped, epoch: int, ckpt: Checkpointer, log) -> None:
    for e, reason in skipped:
        log(f"warning: skipped the checkpoint of epoch {e} in {ckpt.directory}: {reason}; "
            f"using epoch {epoch}.")


def _check_resume(config, workdir: pathlib.Path) -> list[str]:
    """Refuse a resume whose config changes more than :data:`jvae.config_io.RESUMABLE`;
    returns the allowed changes."""
    stored = workdir / "config.json"
    if not stored.exists():
        return []
    refused, allowed = resume_differences(config_from_json(stored), config)
    if refused:
        raise ValueError(
            f"--resume would change {', '.join(refused)} of the run in {workdir}; a resumed "
            "run keeps its model, data and optimiser (only evaluation, figures, checkpointing, "
            "data location and num_epochs upwards may change: jvae.config_io.RESUMABLE). "
            "Start a new --workdir to train another config.")
    return allowed


def _check_space(ckpt: Checkpointer, state: TrainState) -> None:
    """Fail before training when the disk cannot hold two more checkpoints."""
    storable = state._replace(key=jax.random.key_data(state.key))
    need = 2 * sum(int(leaf.nbytes) for leaf in jax.tree.leaves(storable)) + (1 << 20)
    free = shutil.disk_usage(ckpt.directory).free
    if free < need:
        raise OSError(28, f"Not enough disk space for checkpoints in {ckpt.directory}: "
                      f"{free / 1e6:.1f} MB free, about {need / 1e6:.1f} MB needed")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       resume: bool = False, progress: bool = True,
                       log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train ``config`` into ``workdir``; returns the last epoch's metrics record.

    Before anything is written the config is validated and the data and model are built;
    then the work directory is locked (:class:`~jvae.lock.WorkdirLock`) and checked for
    writability and free space. With ``resume`` the run continues from the newest checkpoint
    that verifies (damaged newer ones are skipped with a line to ``log``), after checking
    that ``config`` differs from the stored ``config.json`` only in fields that may change
    on resume (:data:`jvae.config_io.RESUMABLE`).

    Args:
      config: the run config (``jvae.config.default_config()`` and changes).
      workdir: the run directory.
      resume: continue the run in ``workdir`` (a new run if it holds no checkpoint).
      progress: show a progress bar over epochs.
      log: where one-line notices go (skipped checkpoints, a stale lock); default stderr.

    Raises:
      NonFiniteLossError: a training loss became NaN/Inf; the message names epoch and step,
        nothing of that epoch is saved and earlier checkpoints stay intact.
      DivergenceError: a finite loss exceeded ``config.divergence``'s limits; as above.
      FileExistsError: ``workdir`` already holds checkpoints and ``resume`` is False.
      WorkdirLockedError: another live run holds ``workdir``.
      ValueError: an invalid config, or a resume that would change the model, data or
        optimiser (the fields are named).
      OSError: ``workdir`` or its checkpoint directory cannot be written.
    """
    if not str(workdir).strip():
        raise ValueError("The work directory is empty; pass --workdir DIR.")
    workdir = pathlib.Path(workdir)
    log = log or _stderr
    datasets, model, optimizer = _setup(config)
    template = _initial_state(config, model, optimizer, datasets.train[:1])
    lock = WorkdirLock(workdir)
    try:
        lock.acquire()
    except OSError as e:
        raise OSError(e.errno, f"Cannot write to the work directory {workdir}: "
                      f"{e.strerror or e}") from e
    ckpt = Checkpointer(workdir / "checkpoints")
    try:
        if lock.stale:
            log(f"note: {lock.describe_stale()}.")
        check_writable(workdir, "work directory")
        ckpt.check_writable()
        _check_space(ckpt, template)
        return _train(config, workdir, datasets, model, optimizer, template, ckpt, resume,
                      progress, log)
    finally:
        ckpt.close()
        lock.release()


def _train(config, workdir, datasets, model, optimizer, state, ckpt, resume, progress, log):
    """The body of :func:`train_and_evaluate`, with the directory locked and checked."""
    existing = ckpt.all_epochs() or [e for e, _ in ckpt.incomplete()]
    if existing and not resume:
        raise FileExistsError(
            f"{workdir} already holds checkpoints (epoch {max(existing)}); pass --resume to "
            "continue that run or choose a new --workdir.")
    if resume:
        for change in _check_resume(config, workdir):
            log(f"note: resuming with {change}.")
    start, history = 0, []
    if resume and existing:
        restored = ckpt.restore_latest(state, warn=False)
        _report_skipped(restored.skipped, restored.epoch, ckpt, log)
        start, state = restored.epoch, restored.state
        history = [r for r in read_metrics(workdir) if r.get("epoch", 0) <= start]
    if sharding.is_main_process():
        write_json_atomic(workdir / "config.json", normalised(config))
    _write_metrics(workdir, history)

    seeds = _seeds(config)
    sweep = builders.sweep_values(config)
    multi = len(seeds) > 1 or sweep is not None
    eval_keys = jnp.stack([_keys(s)[2] for s in seeds]) if multi else _keys(seeds[0])[2]
    figure_key = _keys(seeds[0])[3]

    train = jax.device_put(jnp.asarray(datasets.train))
    evals = jax.device_put(jnp.asarray(datasets.eval))
    state, train, evals, batch_spec = _place(config, state, train, evals, multi)

    def make_epoch(beta=None):
        loss_fn = (builders.build_loss(config, model) if beta is None
                   else builders.build_loss(config, model, beta=beta))
        return make_train_epoch(loss_fn, optimizer,
                                int(config.batch_size), jit=False,
                                dynamic_binarization=config.dataset.binarize == "dynamic",
                                batch_sharding=batch_spec, step_metrics=True)

    # Many seeds or swept values: one program, vmapped over the stacked states (and betas);
    # the data and the batch order are shared (the order key is repeated per run, see
    # _order_key). plan_fn/run_fn are the epoch in two parts, for dev assessments between
    # chunks of steps (make_train_epoch's plan and run_steps).
    base = make_epoch()
    if sweep is not None:
        betas = jnp.asarray(sweep["beta"])
        swept = jax.vmap(lambda st, beta, d, k: make_epoch(beta)(st, d, k),
                         in_axes=(0, 0, None, 0))
        epoch_fn = jax.jit(lambda st, d, k: swept(st, betas, d, k))
    elif multi:
        epoch_fn = jax.jit(jax.vmap(base, in_axes=(0, None, 0)))
    else:
        epoch_fn = jax.jit(base)

    def epoch_parts():
        """(plan_fn, run_fn): the epoch in two parts (make_train_epoch's plan and
        run_steps), vmapped like epoch_fn, for dev assessments between chunks of steps."""
        plan_fn = jax.jit(jax.vmap(base.plan, in_axes=(0, None, 0)) if multi else base.plan)
        if sweep is not None:
            run = jax.vmap(lambda st, beta, d, *p: make_epoch(beta).run_steps(st, d, *p),
                           in_axes=(0, 0, None, 0, 0, 0))
            return plan_fn, jax.jit(lambda st, d, *p: run(st, betas, d, *p))
        if multi:
            return plan_fn, jax.jit(jax.vmap(base.run_steps, in_axes=(0, None, 0, 0, 0)))
        return plan_fn, jax.jit(base.run_steps)
    ll_samples = int(config.eval.ll_samples)
    ll_every = int(config.eval.ll_every)

    def build_evaluator(with_ll: bool):
        fn = make_evaluator(model, batch_size=int(config.eval.batch_size),
                            elbo_samples=int(config.eval.elbo_samples),
                            ll_samples=ll_samples if (with_ll and ll_samples > 1) else 0,
                            ll_chunk=int(config.eval.ll_chunk))
        return jax.jit(jax.vmap(fn, in_axes=(0, 0, None))) if multi else fn

    evaluator = build_evaluator(True)
    cheap_evaluator = build_evaluator(False) if ll_every and ll_samples > 1 else evaluator
    t0 = time.perf_counter()
    runs = len(seeds) if multi else 0
    steps_per_epoch = int(train.shape[0]) // int(config.batch_size)
    dev = steplog.DevAssessor(config, model, datasets.dev, eval_keys, multi, workdir)
    if dev.every_steps:      # the epoch in chunks; one program per chunk length (at most 2)
        plan_fn, run_fn = epoch_parts()
        plan = plan_fn.lower(state, train, _order_key(config, 1, runs)).compile()
        p0 = plan(state, train, _order_key(config, 1, runs))
        axis = 1 if multi else 0
        run = {}
        for a, b in steplog.chunks(steps_per_epoch, dev.every_steps):
            if b - a not in run:
                run[b - a] = run_fn.lower(state, train, *(steplog.take_steps(x, a, b, axis)
                                                          for x in p0[:3])).compile()
        compiled = functools.partial(steplog.chunked_epoch, plan, run, dev, axis,
                                     steps_per_epoch)
    else:
        compiled = epoch_fn.lower(state, train, _order_key(config, 1, runs)).compile()
    compile_seconds = time.perf_counter() - t0

    num_epochs = int(config.num_epochs)
    snapshot_every = int(config.eval.snapshot_every)
    if snapshot_every < 0:
        raise ValueError(f"config.eval.snapshot_every must be >= 0 (0: off), got {snapshot_every}")
    record: dict[str, Any] = history[-1] if history else {}
    bar = tqdm(range(start + 1, num_epochs + 1), desc="epochs", disable=not progress,
               initial=start, total=num_epochs)
    # Running minimum of the step losses per run, for the divergence guard (kept in the
    # metrics, so a resumed run continues the same guard).
    lowest = np.broadcast_to(np.asarray(record.get("train/loss_min", np.inf), np.float64),
                             (len(seeds),)).copy()
    steps_log = steplog.StepLog(workdir, bool(config.eval.log_steps), multi)
    if resume and existing:
        steps_log.truncate(int(np.ravel(state.step)[0]))
        dev.truncate(int(np.ravel(state.step)[0]))
    elif dev.active:
        dev.truncate(0)
        dev.assess(state.params, 0, epoch=0)          # the notebook's assessment at step 0
    try:
        for epoch in bar:
            t0 = time.perf_counter()
            dev.epoch, dev.final, dev.seconds_in_epoch = epoch, epoch == num_epochs, 0.0
            new_state, metrics, step_aux = compiled(state, train, _order_key(config, epoch, runs))
            step_aux = jax.tree.map(np.asarray, step_aux)                   # waits for the epoch
            step_losses = step_aux["loss"].reshape(len(seeds), -1)
            jax.block_until_ready(new_state)
            seconds = time.perf_counter() - t0 - dev.seconds_in_epoch
            _check_losses(config, ckpt, epoch, state, new_state, step_losses, lowest, multi)
            lowest = np.minimum(lowest, step_losses.min(axis=1))
            steps_log.write(int(np.ravel(state.step)[0]), epoch, step_aux)
            state = new_state
            record = {"epoch": epoch, "step": int(np.ravel(state.step)[0]),
                      "train/seconds": seconds}
            if dev.seconds_in_epoch:
                record["dev/seconds_in_epoch"] = dev.seconds_in_epoch
            if sweep is not None:
                record["sweep/beta"] = sweep["beta"].tolist()
                record["sweep/learning_rate"] = sweep["learning_rate"].tolist()
            elif multi:
                record["seeds"] = seeds
            if epoch == start + 1:
                record["train/compile_seconds"] = compile_seconds
            _record("train", metrics, record)
            record["train/loss_min"] = lowest.tolist() if multi else float(lowest[0])
            if epoch % max(int(config.eval.every), 1) == 0 or epoch == num_epochs:
                t0 = time.perf_counter()
                keys = (jax.vmap(lambda k: jax.random.fold_in(k, epoch))(eval_keys) if multi
                        else jax.random.fold_in(eval_keys, epoch))
                with_ll = not ll_every or epoch % ll_every == 0 or epoch == num_epochs
                _record("eval", (evaluator if with_ll else cheap_evaluator)(state.params, keys,
                                                                            evals), record)
                record["eval/seconds"] = time.perf_counter() - t0
            if epoch == num_epochs and dev.active:
                if not dev.every_steps:      # (chunked epochs assessed after their last step)
                    dev.assess(state.params, record["step"], epoch=epoch, final=True)
                record.update(dev.last)
            _append_metrics(workdir, record)
            history.append(record)
            if (snapshot_every and epoch % snapshot_every == 0
                    and sharding.is_main_process()):              # Lab 5's per-epoch images
                snap = sharding.to_host(state.params)
                write_snapshots(model, jax.tree.map(lambda a: a[0], snap) if multi else snap,
                                jax.random.fold_in(figure_key, epoch), datasets, workdir, epoch,
                                centred=bool(config.dataset.get("centre", False)))
            every = int(config.checkpoint_every)
            if (every and epoch % every == 0) or epoch == num_epochs:
                ckpt.save(epoch, state)
            last_eval = next((r for r in reversed(history) if "eval/distortion" in r
                              or "eval/distortion_mean" in r), record)
            shown = "elbo" if any(k.startswith("eval/elbo") for k in last_eval) else "distortion"
            bar.set_postfix({"loss": f"{_scalar(record, 'train/loss'):.2f}",
                             shown: f"{_scalar(last_eval, f'eval/{shown}'):.2f}"})
    finally:
        bar.close()
    if config.figures and sharding.is_main_process():
        params = sharding.to_host(state.params)    # process-local: no collective from here
        params = jax.tree.map(lambda a: a[0], params) if multi else params
        write_figures(model, params, figure_key, datasets, history, workdir,
                      tsne_points=int(config.eval.tsne_points),
                      centred=bool(config.dataset.get("centre", False)))
    return record


def write_snapshots(model: VAE, params: Any, key: jax.Array, datasets: builders.Datasets,
                    workdir: pathlib.Path, epoch: int, *,
                    centred: bool = False) -> list[pathlib.Path]:
    """Lab 5's per-epoch images (the PyTorch example's ``save_image`` calls), in
    ``workdir/snapshots``: ``reconstruction_{epoch}.png`` (the first 8 evaluation images above
    their reconstructions: decoder means of one posterior sample) and ``sample_{epoch}.png``
    (decoder means of 64 prior draws, 8 x 8). Plain 8-bit image grids (2 px padding), grey or
    RGB as the data, no axes; ``centred`` data (``dataset.centre``) are mapped back to
    [0, 1] first; nothing for data that are not images or for an autoencoder (no prior)."""
    if len(model.data_shape) != 3 or isinstance(model.posterior, PointHead):
        return []
    from PIL import Image   # Pillow: a dependency of matplotlib

    k_rec, k_sample = jax.random.split(key)
    originals = np.asarray(datasets.eval[:8])
    recons = np.asarray(reconstruct(model, params, k_rec, originals, mode="mean",
                                    latent="sample"))
    _, means = sample_prior(model, params, k_sample, 64, mode="mean")
    out = workdir / "snapshots"
    out.mkdir(exist_ok=True)
    paths = [out / f"reconstruction_{epoch}.png", out / f"sample_{epoch}.png"]
    shown = uncentre if centred else (lambda a: a)
    grids = [plotting.image_grid(shown(np.concatenate([originals, recons])), nrow=8),
             plotting.image_grid(shown(np.asarray(means)), nrow=8)]
    for path, grid in zip(paths, grids):   # 8-bit, rounded as torchvision's save_image
        Image.fromarray(np.clip(grid * 255 + 0.5, 0, 255).astype(np.uint8),
                        "L" if grid.ndim == 2 else "RGB").save(path)
    return paths


def _check_losses(config, ckpt, epoch, state, new_state, step_losses, lowest, multi) -> None:
    """Raise NonFiniteLossError / DivergenceError for an epoch whose per-step losses
    ``[runs, steps]`` (or new parameters) went wrong, naming the step and the run."""
    step0 = int(np.ravel(state.step)[0])
    kept = f"Nothing of epoch {epoch} was saved; {_last_good(ckpt)}."
    labels = _labels(config)
    for i, losses in enumerate(step_losses):   # the earliest bad step of each run is named
        bad = first_non_finite(losses)
        diverged = first_divergent_step(losses, lowest[i], factor=float(config.divergence.factor),
                                        max_loss=float(config.divergence.max_loss),
                                        patience=int(config.divergence.patience))
        which = f"It happened in {labels[i]}. " if multi else ""
        if diverged is not None and (bad is None or diverged[0] < bad):
            step, reason = diverged
            raise DivergenceError(epoch, step, step0 + step, float(losses[step]), reason,
                                  which + kept)
        if bad is not None:
            raise NonFiniteLossError(epoch, bad, step0 + bad, which + kept)
    if not _all_finite(new_state.params):
        bad = step_losses.shape[1] - 1        # the last update produced NaN/Inf parameters
        raise NonFiniteLossError(epoch, bad, step0 + bad, kept)


def _last_good(ckpt: Checkpointer) -> str:
    last = ckpt.latest_epoch()
    return (f"the last good checkpoint (epoch {last}) in {ckpt.directory} is intact"
            if last is not None else "no checkpoint had been written yet")


def _place(config, state, train, evals, stacked: bool):
    """Put state and data on the devices as ``config.data_parallel`` / ``shard_seeds`` ask.

    ``data_parallel``: state and data replicated on every device, each step's batch split
    over them (gradients all-reduced by the compiler). ``shard_seeds``: the stacked states of
    a multi-seed run or sweep spread over the devices (no communication). Returns
    ``(state, train, evals, batch_sharding or None)``; with neither option, nothing moves.
    """
    if not (config.data_parallel or config.shard_seeds):
        if jax.process_count() > 1:
            raise ValueError(f"{jax.process_count()} processes but config.data_parallel is "
                             "False: every process would train the whole model alone; pass "
                             "--config.data_parallel=True.")
        return state, train, evals, None
    mesh = sharding.make_mesh()
    if config.data_parallel and config.shard_seeds:
        raise ValueError("Choose one of config.data_parallel and config.shard_seeds.")
    if config.shard_seeds and jax.process_count() > 1:
        raise ValueError("config.shard_seeds runs in one process only (its per-seed metrics "
                         "would span processes); use config.data_parallel with several.")
    train, evals = sharding.replicate((train, evals), mesh)
    if config.data_parallel:
        sharding.check_batch_divisible(int(config.batch_size), mesh)
        return sharding.replicate(state, mesh), train, evals, sharding.batch_sharding(mesh)
    if not stacked:
        raise ValueError("config.shard_seeds needs num_seeds > 1 or a sweep.")
    return sharding.shard_leading_axis(state, mesh), train, evals, None


def _all_finite(tree: Any) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


def write_figures(model: VAE, params: Any, key: jax.Array, datasets: builders.Datasets,
                  history: list[dict], workdir: pathlib.Path, *,
                  tsne_points: int = 1000, centred: bool = False) -> list[pathlib.Path]:
    """Write the standard figures of a run into ``workdir``; returns their paths.

    Images (grey or RGB as the data; with ``centred``, data in [-1, 1] from
    ``dataset.centre``, every image is mapped back to [0, 1] for display, as Homework 2's
    ``* 0.5 + 0.5``): ``samples.png`` (decoder means of 64 prior draws; not for an
    autoencoder), ``reconstructions.png``
    (evaluation images above their reconstructions), ``interpolations.png`` (Homework 2's:
    decoder means along ``z1 (1 - a) + z2 a`` for 10 values of ``a`` in [0, 1], between the
    posterior means of evaluation images ``i`` and ``i + P``, one pair per row,
    :func:`jvae.inspection.interpolate_latents`), ``latents.png`` (posterior means of the
    evaluation set, first two coordinates, coloured by label). 2-D data:
    ``samples_2d.png`` (data, samples with and without decoder noise). Both:
    ``curves.png`` (train loss, eval ELBO, distortion, rate per epoch; for a multi-seed run the
    mean with a band of one standard deviation across seeds, the other figures from the
    first seed). Latents of more than 2 dimensions: ``latents_tsne.png`` (a t-SNE map,
    :func:`jvae.embedding.tsne`, of the posterior means of the first ``tsne_points`` evaluation
    examples; 0: none).

    From the step logs (:mod:`jvae.steplog`): ``steps.png`` (every step's training ELBO, D,
    R and control-variate loss) and ``dev.png`` (the dev assessments). The DPM2 notebook's
    ``inspect_lvm`` for images: ``prior_oversampled.png`` (16 draws ``z ~ p(z)``, 4
    observations ``x ~ p(x|z)`` each) and ``conditional_samples.png`` (evaluation images
    above ``x' ~ p(x|z), z ~ q(z|x)``); for a mixture prior ``prior_histograms.png``,
    ``prior_pairs.png`` and ``prior_tsne.png`` (prior samples by component).
    """
    k_mean, k_sample, k_rec = jax.random.split(key, 3)
    paths = []
    evals = np.asarray(datasets.eval)
    if history:
        paths.append(plotting.save_curves(history, workdir / "curves.png"))
    autoencoder = isinstance(model.posterior, PointHead)   # no prior to sample from
    shown = uncentre if centred else (lambda a: a)
    if len(model.data_shape) == 3:
        if not autoencoder:
            _, means = _compiled(sample_prior, model, params, k_mean, num=64, mode="mean")
            paths.append(plotting.save_image_grid(shown(np.asarray(means)),
                                                  workdir / "samples.png", nrow=8,
                                                  title="prior samples (decoder means)"))
        originals = evals[:32]
        recons = _compiled(reconstruct, model, params, k_rec, originals, mode="mean",
                           validate=False)
        paths.append(plotting.save_reconstructions(shown(originals), shown(np.asarray(recons)),
                                                   workdir / "reconstructions.png", n=8))
        pairs = min(10, len(evals) // 2)
        if pairs:
            path = np.asarray(_compiled(interpolate_latents, model, params, evals[:pairs],
                                        evals[pairs:2 * pairs], num=10, validate=False))
            paths.append(plotting.save_interpolations(
                shown(path), workdir / "interpolations.png",
                title="decoded z1 (1 - a) + z2 a, a = 0 ... 1 (left to right)"))
    elif not autoencoder:
        n = min(len(evals), 3000)
        _, samples = _compiled(sample_prior, model, params, k_sample, num=n, mode="sample")
        _, means = _compiled(sample_prior, model, params, k_sample, num=n, mode="mean")
        paths.append(plotting.save_scatter_2d(workdir / "samples_2d.png", data=evals[:n],
                                              samples=np.asarray(samples),
                                              means=np.asarray(means)))
    latents = np.asarray(_compiled(_posterior_means, model, params, evals[:2000]))
    if latents.shape[-1] >= 2:
        labels = None if datasets.eval_labels is None else datasets.eval_labels[:2000]
        paths.append(plotting.save_latent_scatter(latents[:, :2], labels,
                                                  workdir / "latents.png",
                                                  title=("codes" if autoencoder else
                                                         "posterior means")
                                                  + " (first 2 dims)"))
    paths += _step_and_inspection_figures(model, params, key, evals, workdir, autoencoder,
                                          tsne_points, shown)
    if latents.shape[-1] > 2 and tsne_points > 0 and len(latents) > 31:
        n = min(int(tsne_points), len(latents))
        labels = None if datasets.eval_labels is None else datasets.eval_labels[:n]
        paths.append(plotting.save_latent_tsne(
            latents[:n], labels, workdir / "latents_tsne.png", max_points=n,
            perplexity=min(30.0, (n - 2) / 3.0),
            title=f"t-SNE of the {latents.shape[-1]}-D "
                  + ("codes" if autoencoder else "posterior means")))
    return paths


def _compiled(fn: Callable, model: VAE, *args, **static):
    """``fn(model, *args, **static)`` as one compiled program. Run eagerly, the figures'
    sampling compiled every primitive on its own (some 120 small programs for one run);
    ``static`` holds the integer, string and boolean arguments."""
    return _jitted(fn, model, tuple(sorted(static.items())))(*args)


@functools.lru_cache(maxsize=64)
def _jitted(fn: Callable, model: VAE, static: tuple) -> Callable:
    # Flax modules hash by value: runs of one model reuse the compiled programs.
    return jax.jit(functools.partial(fn, model, **dict(static)))


def _posterior_means(model: VAE, params: Any, x: jax.Array) -> jax.Array:
    return model.apply(params, x, method=VAE.encode).mean()


def _step_and_inspection_figures(model, params, key, evals, workdir: pathlib.Path,
                                 autoencoder: bool, tsne_points: int,
                                 shown: Callable = lambda a: a) -> list[pathlib.Path]:
    """The step-log figures and the DPM2 notebook's inspection figures (see write_figures);
    their keys are folded from ``key`` so the older figures keep theirs."""
    paths = []
    steps = steplog.read_jsonl(workdir / steplog.STEPS_FILE)
    if steps:
        paths.append(plotting.save_step_curves(steps, workdir / "steps.png"))
    dev = steplog.read_jsonl(workdir / steplog.DEV_FILE)
    if dev:
        paths.append(plotting.save_dev_curves(dev, workdir / "dev.png"))
    if autoencoder:
        return paths
    k_prior, k_cond, k_mix = (jax.random.fold_in(key, 100 + i) for i in range(3))
    if len(model.data_shape) == 3:
        _, obs = _compiled(prior_observations, model, params, k_prior, num=16, oversample=4)
        paths.append(plotting.save_oversampled(shown(np.asarray(obs)),
                                               workdir / "prior_oversampled.png"))
        x = evals[:16]
        cond = _compiled(conditional_observations, model, params, k_cond, x, oversample=4,
                         validate=False)
        paths.append(plotting.save_conditional_samples(shown(x), shown(np.asarray(cond)),
                                                       workdir / "conditional_samples.png"))
    z, components = _compiled(prior_samples_with_components, model, params, k_mix, num=5000)
    if components is not None:
        z, components = np.asarray(z), np.asarray(components)
        paths.append(plotting.save_prior_histograms(z, components,
                                                    workdir / "prior_histograms.png"))
        paths.append(plotting.save_prior_pairs(z, components, workdir / "prior_pairs.png"))
        if tsne_points > 31 and z.shape[-1] > 2:
            paths.append(plotting.save_prior_tsne(z, components, workdir / "prior_tsne.png",
                                                  num_points=min(int(tsne_points), len(z))))
    return paths
