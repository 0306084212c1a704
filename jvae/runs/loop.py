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
import pathlib
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from jvae.data import clear_caches, pixels_to_unit
from jvae.evaluation import make_evaluator
from jvae.models.vae import VAE
from jvae.runs import builders, schema, steplog, streaming
from jvae.runs.checkpoints import Checkpointer, check_writable, write_json_atomic
from jvae.runs.checks import check_losses, check_resume, check_space
from jvae.runs.figures import write_figures, write_latent_snapshot, write_snapshots
from jvae.runs.lock import WorkdirLock
from jvae.runs.outputs import evaluated_split, progress_fields, trained_split
from jvae.runs.overrides import normalised
from jvae.runs.placement import place
from jvae.runs.records import add_metrics, append_metrics, cut_records
from jvae.runs.restore import report_skipped, stderr_line
from jvae.runs.setup import build_run, initial_state, order_key, run_keys, run_seeds
from jvae.runs.tensorboard import TensorBoardLog, check_available
from jvae.training import TrainState, make_train_epoch, sharding, steps_per_epoch
from jvae.training.compiler import training_jit

__all__ = ["train_and_evaluate"]


class Run(NamedTuple):
    """What stays fixed while a run's epochs execute (built by :func:`plan_run`).

    Attributes:
      config, workdir, datasets, model, ckpt: the run's config, directory, data, model and
        checkpointer.
      seeds: the seed of every element of the run's leading axis.
      sweep: the swept values (``schema.sweep_values``), or ``None``.
      multi: whether the state is stacked (several seeds or a sweep).
      eval_keys: the evaluation key (stacked per element when ``multi``).
      figure_key: the figures' key (the first seed's).
    """

    config: ml_collections.ConfigDict
    workdir: pathlib.Path
    datasets: builders.Datasets
    model: VAE
    ckpt: Checkpointer
    seeds: list[int]
    sweep: dict | None
    multi: bool
    eval_keys: jax.Array
    figure_key: jax.Array

    @property
    def runs(self) -> int:
        """The length of the stacked axis (0 for a single run)."""
        return len(self.seeds) if self.multi else 0


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       resume: bool = False, progress: bool = True, redraw: bool = True,
                       log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train ``config`` into ``workdir``; returns the last epoch's metrics record.

    Before anything is written the config is validated and the data and model are built;
    then the work directory is locked (:class:`~jvae.runs.lock.WorkdirLock`) and checked for
    writability and free space. With ``resume`` the run continues from the newest checkpoint
    that verifies (damaged newer ones are skipped with a line to ``log``), after checking
    that ``config`` differs from the stored ``config.json`` only in fields that may change
    on resume (:data:`jvae.runs.overrides.RESUMABLE`).

    Args:
      config: the run config (``jvae.runs.defaults.default_config()`` and changes).
      workdir: the run directory.
      resume: continue the run in ``workdir`` (a new run if it holds no checkpoint).
      progress: show a progress bar over epochs (its fields: the train loss and the
        evaluated split's ELBO, e.g. ``train loss 104.2, test ELBO -105.1``).
      redraw: when ``resume`` finds the run already finished (its checkpoint is at
        ``num_epochs``), draw its figures again; with ``False`` nothing is written but
        ``config.json``. Either way one line to ``log`` says that nothing was trained.
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
    log = log or stderr_line
    datasets, model, optimizer = build_run(config, stored=True, rows=True)  # uint8 stays uint8
    check_available(bool(config.get("tensorboard", False)))
    template = initial_state(config, model, optimizer, pixels_to_unit(datasets.train[:1]),
                             x_train=datasets.train)
    data = [datasets]     # handed over: _train drops the host training array once placed
    del datasets
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
        check_space(ckpt, template)
        return _train(config, workdir, data, model, optimizer, template, ckpt, resume,
                      progress, redraw, log)
    finally:
        ckpt.close()
        lock.release()


def _train(config, workdir, data: list, model, optimizer, state, ckpt, resume, progress,
           redraw, log):
    """The body of :func:`train_and_evaluate`, with the directory locked and checked: open
    the run (fresh or resumed), plan it, compile its epoch, run the epochs, draw the figures
    (a resumed run that had finished: only with ``redraw``).

    ``data`` is a one-element list holding the run's :class:`~jvae.runs.builders.Datasets`,
    emptied here: once the training array is on the device no host reference to it is
    left (this frame's, the caller's, the readers' caches: :func:`jvae.data.clear_caches`),
    so the host copy is freed and the peak memory grows by about one byte per stored byte.
    """
    datasets = data.pop()
    start, state, history = open_run(config, workdir, state, ckpt, resume, log)
    run = plan_run(config, workdir, datasets, model, ckpt)
    if start and start >= int(config.num_epochs):
        log(f"note: already finished at epoch {start}; nothing to train ("
            + ("figures redrawn)" if redraw and config.figures else
               "figures kept as they were; --redraw draws them again)" if config.figures
               else "config.figures is off)"))
        if redraw:
            finish_run(run, state, history)
        return history[-1] if history else {}
    streamed = streaming.is_streamed(config, datasets.train)
    state, train, evals, batch_spec = place(config, state,
                                            None if streamed else datasets.train,
                                            datasets.eval, run.multi, log)
    if streamed:
        mesh = sharding.make_mesh() if config.data_parallel or config.shard_seeds else None
        train = streaming.Stream(datasets.train, mesh, check=_chunk_check(config, datasets))
        log(f"note: streaming the {len(train)} training examples "
            f"({datasets.train.nbytes / 1e6:.1f} MB) from {datasets.train.name}: more than "
            f"{streaming.FIELD} ({streaming.resolve_budget(config.dataset.memory_budget) / 1e6:.1f} MB).")
    datasets = datasets._replace(train=None)      # the host copy: freed (see the docstring)
    run = run._replace(datasets=datasets)
    clear_caches()
    t0 = time.perf_counter()
    dev = steplog.DevAssessor(config, model, datasets.dev, run.eval_keys, run.multi, workdir)
    epoch = compile_epoch(run, optimizer, batch_spec, dev, state, train)
    compile_seconds = time.perf_counter() - t0
    state, history = run_epochs(run, state, start, history, epoch, dev, train, evals,
                                compile_seconds=compile_seconds, progress=progress)
    finish_run(run, state, history)
    return history[-1] if history else {}


def open_run(config, workdir: pathlib.Path, state: TrainState, ckpt: Checkpointer, resume: bool,
             log: Callable[[str], None]) -> tuple[int, TrainState, list[dict]]:
    """Start or resume the run in ``workdir``: refuse a fresh start over checkpoints and a
    resume that changes more than may change, restore the newest verified checkpoint, write
    ``config.json`` and cut the records back to that checkpoint (all of them when there is
    none: :func:`jvae.runs.records.cut_records`). Returns ``(start epoch, state, history)``."""
    existing = ckpt.all_epochs() or [e for e, _ in ckpt.incomplete()]
    if existing and not resume:
        raise FileExistsError(
            f"{workdir} already holds checkpoints (epoch {max(existing)}); pass --resume to "
            "continue that run or choose a new --workdir.")
    if resume:
        for change in check_resume(config, workdir):
            log(f"note: resuming with {change}.")
    start = 0
    if resume and existing:
        restored = ckpt.restore_latest(state, warn=False)
        report_skipped(restored.skipped, restored.epoch, ckpt, log)
        start, state = restored.epoch, restored.state
    if sharding.is_main_process():
        write_json_atomic(workdir / "config.json", normalised(config))
    history = cut_records(workdir, start, int(np.ravel(state.step)[0]) if start else 0)
    return start, state, history


def plan_run(config, workdir: pathlib.Path, datasets: builders.Datasets, model: VAE,
             ckpt: Checkpointer) -> Run:
    """The fixed parts of a run: its elements' seeds, the sweep, the evaluation and figure
    keys."""
    seeds = run_seeds(config)
    sweep = schema.sweep_values(config)
    multi = len(seeds) > 1 or sweep is not None
    eval_keys = jnp.stack([run_keys(s)[2] for s in seeds]) if multi else run_keys(seeds[0])[2]
    return Run(config, workdir, datasets, model, ckpt, seeds, sweep, multi, eval_keys,
               run_keys(seeds[0])[3])


def epoch_programs(run: Run, optimizer, batch_spec) -> tuple[Callable, Callable]:
    """``(epoch_fn, parts)``: the jitted epoch, vmapped over the run's elements (and betas)
    when it has several, and ``parts()`` giving the same epoch in two parts ``(plan_fn,
    run_fn)`` (:func:`jvae.training.make_train_epoch`'s plan and run_steps) for dev
    assessments between chunks of steps. The data and the batch order are shared by all
    elements (the order key is repeated per element, see :func:`jvae.runs.setup.order_key`).
    """
    config, model = run.config, run.model

    def make_epoch(beta=None):
        loss_fn = (builders.build_loss(config, model) if beta is None
                   else builders.build_loss(config, model, beta=beta))
        return make_train_epoch(loss_fn, optimizer,
                                int(config.batch_size), jit=False, model=model,
                                dynamic_binarization=config.dataset.binarize == "dynamic",
                                batch_sharding=batch_spec, step_metrics=True,
                                drop_last=bool(config.get("drop_last", True)))

    base = make_epoch()
    if run.sweep is not None:
        betas = jnp.asarray(run.sweep["beta"])
        swept = jax.vmap(lambda st, beta, d, k: make_epoch(beta)(st, d, k),
                         in_axes=(0, 0, None, 0))
        epoch_fn = training_jit(lambda st, d, k: swept(st, betas, d, k))
    elif run.multi:
        epoch_fn = training_jit(jax.vmap(base, in_axes=(0, None, 0)))
    else:
        epoch_fn = training_jit(base)

    def parts():
        plan_fn = jax.jit(jax.vmap(base.plan, in_axes=(0, None, 0)) if run.multi else base.plan)
        rows = (0,) * (3 if config.get("drop_last", True) else 4)       # EpochPlan.rows(): + the mask
        if run.sweep is not None:
            steps = jax.vmap(lambda st, beta, d, *p: make_epoch(beta).run_steps(st, d, *p),
                             in_axes=(0, 0, None) + rows)
            return plan_fn, training_jit(lambda st, d, *p: steps(st, betas, d, *p))
        if run.multi:
            return plan_fn, training_jit(jax.vmap(base.run_steps, in_axes=(0, None) + rows))
        return plan_fn, training_jit(base.run_steps)

    return epoch_fn, parts


def compile_epoch(run: Run, optimizer, batch_spec, dev: steplog.DevAssessor, state: TrainState,
                  train: jax.Array) -> Callable:
    """The compiled epoch ``(state, train, order_key) -> (state, metrics, step_aux)``: one
    program, or, with dev assessments every N steps, a plan program and one program per chunk
    length (at most 2) run by :func:`jvae.runs.steplog.chunked_epoch`."""
    epoch_fn, parts = epoch_programs(run, optimizer, batch_spec)
    key = order_key(run.config, 1, run.runs)
    if isinstance(train, streaming.Stream):
        return _streamed_epoch(run, parts, dev, state, train, key)
    if not dev.every_steps:
        return epoch_fn.lower(state, train, key).compile()
    plan_fn, run_fn = parts()
    plan = plan_fn.lower(state, train, key).compile()
    p0 = plan(state, train, key)
    axis = 1 if run.multi else 0
    num_steps = steps_per_epoch(int(train.shape[0]), int(run.config.batch_size),
                                bool(run.config.get("drop_last", True)))
    programs = {}
    for a, b in steplog.chunks(num_steps, dev.every_steps):
        if b - a not in programs:
            programs[b - a] = run_fn.lower(state, train, *(steplog.take_steps(x, a, b, axis)
                                                           for x in p0.rows())).compile()
    return functools.partial(steplog.chunked_epoch, plan, programs, dev, axis, num_steps)


def _streamed_epoch(run: Run, parts, dev: steplog.DevAssessor, state: TrainState,
                    train: streaming.Stream, key) -> Callable:
    """The out-of-core epoch (:func:`jvae.runs.streaming.streamed_epoch`): the plan program
    and one ``run_steps`` program per chunk length (at most 2), compiled ahead of time."""
    config = run.config
    batch_size = int(config.batch_size)
    plan_fn, run_fn = parts()
    placeholder = train.constant(streaming.placeholder(len(train)))
    plan = plan_fn.lower(state, placeholder, key).compile()
    p0 = plan(state, placeholder, key)
    axis = 1 if run.multi else 0
    num_steps = steps_per_epoch(len(train), batch_size, bool(config.get("drop_last", True)))
    row_bytes = train.rows.nbytes // max(len(train), 1)
    chunk = streaming.chunk_steps(batch_size, row_bytes,
                                  streaming.resolve_budget(config.dataset.memory_budget),
                                  dev.every_steps)
    chunks = streaming.stream_chunks(num_steps, chunk, dev.every_steps)
    programs = {}
    for a, b in chunks:
        if b - a not in programs:
            data = jax.ShapeDtypeStruct(((b - a) * batch_size, *train.shape[1:]), train.dtype,
                                        sharding=train.sharding())
            local = train.constant(streaming.relative_batches(b - a, batch_size, run.runs))
            rows = [steplog.take_steps(x, a, b, axis) for x in p0.rows()[1:]]
            programs[b - a] = run_fn.lower(state, data, local, *rows).compile()
    return functools.partial(streaming.streamed_epoch, plan, programs, dev, axis, num_steps,
                             batch_size, chunks, run.runs, train)


def _chunk_check(config, datasets) -> Callable | None:
    """The check of each streamed chunk of float data (uint8 pixels need none): finite values
    in the likelihood's support, as the in-memory path checks the whole split."""
    if datasets.train.dtype == np.uint8:
        return None
    from jvae.data import check_data
    from jvae.runs.schema import LIKELIHOOD_SUPPORT

    support = LIKELIHOOD_SUPPORT.get(config.model.likelihood)
    return lambda chunk: check_data(chunk, name=f"training data ({config.dataset.name})",
                                    support=support)


def evaluators(run: Run) -> tuple[Callable, Callable]:
    """``(full, cheap)``: the evaluator with the importance-sampled log-likelihood and the
    one without it (for epochs between ``config.eval.ll_every``; the same when every epoch
    has it), vmapped over the run's elements."""
    config = run.config
    ll_samples = int(config.eval.ll_samples)

    def build(with_ll: bool):
        fn = make_evaluator(run.model, batch_size=int(config.eval.batch_size),
                            elbo_samples=int(config.eval.elbo_samples),
                            ll_samples=ll_samples if (with_ll and ll_samples > 1) else 0,
                            ll_chunk=int(config.eval.ll_chunk))
        return jax.jit(jax.vmap(fn, in_axes=(0, 0, None))) if run.multi else fn

    full = build(True)
    cheap = build(False) if int(config.eval.ll_every) and ll_samples > 1 else full
    return full, cheap


def run_epochs(run: Run, state: TrainState, start: int, history: list[dict], epoch_fn: Callable,
               dev: steplog.DevAssessor, train: jax.Array, evals: jax.Array, *,
               compile_seconds: float, progress: bool) -> tuple[TrainState, list[dict]]:
    """Epochs ``start + 1 .. num_epochs``: train, check the losses, log the steps, evaluate,
    record, snapshot and checkpoint each. Returns the final state and all records."""
    config = run.config
    num_epochs = int(config.num_epochs)
    snapshot_every = int(config.eval.snapshot_every)
    if snapshot_every < 0:
        raise ValueError(f"config.eval.snapshot_every must be >= 0 (0: off), got {snapshot_every}")
    full, cheap = evaluators(run)
    split = evaluated_split(config)
    record: dict[str, Any] = history[-1] if history else {}
    bar = tqdm(range(start + 1, num_epochs + 1), desc="epochs", disable=not progress,
               initial=start, total=num_epochs)
    # Running minimum of the step losses per run, for the divergence guard (kept in the
    # metrics, so a resumed run continues the same guard).
    lowest = np.broadcast_to(np.asarray(record.get("train/loss_min", np.inf), np.float64),
                             (len(run.seeds),)).copy()
    steps_log = steplog.StepLog(run.workdir, bool(config.eval.log_steps), run.multi)
    first_step = int(np.ravel(state.step)[0]) + 1 if start else 0
    tb = TensorBoardLog(run.workdir, bool(config.get("tensorboard", False))
                        and sharding.is_main_process(), purge_step=first_step)
    if start == 0 and dev.active:     # (the records were cut back by open_run)
        dev.assess(state.params, 0, epoch=0)          # the notebook's assessment at step 0
    if start == 0:
        _latent_snapshot(run, state, 0)               # the lecture draws before each epoch
    try:
        for epoch in bar:
            t0 = time.perf_counter()
            dev.epoch, dev.final, dev.seconds_in_epoch = epoch, epoch == num_epochs, 0.0
            new_state, metrics, step_aux = epoch_fn(state, train,
                                                    order_key(config, epoch, run.runs))
            step_aux = jax.tree.map(np.asarray, step_aux)                   # waits for the epoch
            step_losses = step_aux["loss"].reshape(len(run.seeds), -1)
            jax.block_until_ready(new_state)
            seconds = time.perf_counter() - t0 - dev.seconds_in_epoch
            check_losses(config, run.ckpt, epoch, state, new_state, step_losses, lowest,
                         run.multi)
            lowest = np.minimum(lowest, step_losses.min(axis=1))
            tb.write("steps", steps_log.write(int(np.ravel(state.step)[0]), epoch, step_aux))
            state = new_state
            record = _train_record(run, state, epoch, start, seconds, compile_seconds, metrics,
                                   lowest, dev)
            if epoch % max(int(config.eval.every), 1) == 0 or epoch == num_epochs:
                _evaluate_into(record, run, state, epoch, full, cheap, evals)
            if epoch == num_epochs and dev.active:
                if not dev.every_steps:      # (chunked epochs assessed after their last step)
                    dev.assess(state.params, record["step"], epoch=epoch, final=True)
                record.update(dev.last)
            append_metrics(run.workdir, record)
            history.append(record)
            tb.write("dev", dev.written)
            tb.write("epochs", [record])
            tb.flush()
            dev.written = []
            _snapshot_and_checkpoint(run, state, epoch, snapshot_every)
            bar.set_postfix_str(progress_fields(history, record, split))
    finally:
        bar.close()
        tb.close()
    return state, history


def _train_record(run: Run, state: TrainState, epoch: int, start: int, seconds: float,
                  compile_seconds: float, metrics: dict, lowest: np.ndarray,
                  dev: steplog.DevAssessor) -> dict:
    """The epoch's record before evaluation: step, timings, sweep or seeds, train metrics."""
    record = {"epoch": epoch, "step": int(np.ravel(state.step)[0]), "train/seconds": seconds}
    if dev.seconds_in_epoch:
        record["dev/seconds_in_epoch"] = dev.seconds_in_epoch
    if run.sweep is not None:
        record["sweep/beta"] = run.sweep["beta"].tolist()
        record["sweep/learning_rate"] = run.sweep["learning_rate"].tolist()
    elif run.multi:
        record["seeds"] = run.seeds
    if epoch == start + 1:
        record["train/compile_seconds"] = compile_seconds
    add_metrics("train", metrics, record)
    record["train/loss_min"] = lowest.tolist() if run.multi else float(lowest[0])
    return record


def _evaluate_into(record: dict, run: Run, state: TrainState, epoch: int, full: Callable,
                   cheap: Callable, evals: jax.Array) -> None:
    """Evaluate the epoch's parameters (with the log-likelihood on ``ll_every`` epochs and
    the last) into ``record``; the keys are folded from the epoch number."""
    t0 = time.perf_counter()
    keys = (jax.vmap(lambda k: jax.random.fold_in(k, epoch))(run.eval_keys) if run.multi
            else jax.random.fold_in(run.eval_keys, epoch))
    ll_every = int(run.config.eval.ll_every)
    with_ll = not ll_every or epoch % ll_every == 0 or epoch == int(run.config.num_epochs)
    add_metrics("eval", (full if with_ll else cheap)(state.params, keys, evals), record)
    record["eval/seconds"] = time.perf_counter() - t0
    record["eval/examples"] = int(evals.shape[0])


def _snapshot_and_checkpoint(run: Run, state: TrainState, epoch: int, snapshot_every: int) -> None:
    """Lab 5's per-epoch images every ``snapshot_every`` epochs; a checkpoint every
    ``checkpoint_every`` epochs and at the last."""
    config = run.config
    latent_every = int(config.eval.get("latent_snapshot_every", 0))
    if latent_every and epoch % latent_every == 0:
        _latent_snapshot(run, state, epoch)
    if snapshot_every and epoch % snapshot_every == 0 and sharding.is_main_process():
        snap = sharding.to_host(state.params)
        write_snapshots(run.model, jax.tree.map(lambda a: a[0], snap) if run.multi else snap,
                        jax.random.fold_in(run.figure_key, epoch), run.datasets, run.workdir,
                        epoch, centred=bool(config.dataset.get("centre", False)))
    every = int(config.checkpoint_every)
    if (every and epoch % every == 0) or epoch == int(config.num_epochs):
        run.ckpt.save(epoch, state)


def _latent_snapshot(run: Run, state: TrainState, epoch: int) -> None:
    """The lecture's latent space of all evaluation points at ``epoch`` (0: before training),
    when ``config.eval.latent_snapshot_every`` is set (process 0; the first element of a
    stacked run)."""
    config = run.config
    if not int(config.eval.get("latent_snapshot_every", 0)) or not sharding.is_main_process():
        return
    params = sharding.to_host(state.params)
    write_latent_snapshot(run.model, jax.tree.map(lambda a: a[0], params) if run.multi else params,
                          run.datasets, run.workdir, epoch,
                          batch_size=int(config.eval.batch_size))


def finish_run(run: Run, state: TrainState, history: list[dict]) -> None:
    """The standard figures of the finished run (process 0; the first element's parameters
    for a stacked run)."""
    config = run.config
    if config.figures and sharding.is_main_process():
        params = sharding.to_host(state.params)    # process-local: no collective from here
        params = jax.tree.map(lambda a: a[0], params) if run.multi else params
        write_figures(run.model, params, run.figure_key, run.datasets, history, run.workdir,
                      tsne_points=int(config.eval.tsne_points),
                      centred=bool(config.dataset.get("centre", False)),
                      reconstructions=config.eval.get("reconstructions", "mean"),
                      train_split=trained_split(config),
                      eval_split=evaluated_split(config))
