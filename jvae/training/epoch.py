"""The jitted ``lax.scan`` epoch.

An epoch is one compiled program: the on-device data array is shuffled with a key from the
state, cut into ``N // batch_size`` batches (the remainder of a shuffled epoch is dropped, so
every step has the same shape), and ``lax.scan`` runs the optimiser steps. Nothing goes back
to the host until the epoch ends.

With ``drop_last=False`` the remainder is kept, as a PyTorch ``DataLoader(...,
drop_last=False)`` keeps it: the epoch takes ``ceil(N / batch_size)`` steps, the last batch
is padded to ``batch_size`` rows (repeating examples of the same shuffle) and a ``[B]`` mask
marks its real rows, which the loss's batch means count alone (``loss(..., mask=mask)``).
Every step keeps the same shapes, so nothing is compiled twice.

The training array may hold stored 8-bit pixels (uint8, a quarter of float32's device
memory): each batch is converted to float32 grey levels ``v / 255`` after it is sliced, inside
the compiled step (:func:`jvae.data.pixels_to_unit`, bit for bit the readers' float32), so
uint8 data trains exactly as the same data read as float32.

Before the compiled epoch runs, a concrete training array is checked once
(:func:`jvae.data.check_data`): a NaN pixel or integer images raise a one-line ``ValueError``
instead of returning NaN parameters or training on nonsense.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jvae.data.transforms import pixels_to_unit
from jvae.data.validate import UNIT_INTERVAL, check_data, likelihood_support
from jvae.objectives.base import (EstimatorState, Objective, accepts_mask, accepts_step,
                                  as_objective)
from jvae.training.state import TrainState, _untrainable, trainable
from jvae.data.arguments import check_count
from jvae.training.compiler import training_jit

__all__ = ["EpochPlan", "TrainEpoch", "make_train_epoch", "steps_per_epoch"]

LossFn = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, dict]]


class EpochPlan(NamedTuple):
    """What one epoch will do, drawn before any step runs (see :func:`make_train_epoch`).

    Attributes:
      batches: ``[S, batch_size]`` int32 indices into the training array, one row per step.
      loss_keys: ``[S]`` typed keys, the loss's key of each step.
      bin_keys: ``[S]`` typed keys, each step's dynamic-binarisation key.
      next_key: the state's key after the epoch.
      mask: ``[S, batch_size]`` float32, 1 for a real example and 0 for a padded row (only
        with ``drop_last=False``; ``None`` otherwise, every row real).
    """

    batches: jax.Array
    loss_keys: jax.Array
    bin_keys: jax.Array
    next_key: jax.Array
    mask: jax.Array | None = None

    def rows(self) -> tuple:
        """The per-step arrays ``run_steps`` takes after ``(state, data)``: ``(batches,
        loss_keys, bin_keys)``, and ``mask`` when there is one (slice them alike to run a
        chunk of the epoch)."""
        head = (self.batches, self.loss_keys, self.bin_keys)
        return head if self.mask is None else head + (self.mask,)


def steps_per_epoch(num_examples: int, batch_size: int, drop_last: bool = True) -> int:
    """Optimiser steps of one epoch over ``num_examples``: ``N // batch_size``, or
    ``ceil(N / batch_size)`` with ``drop_last=False`` (PyTorch's ``len(DataLoader)``).
    Raises ``ValueError`` for a non-positive ``batch_size`` or an epoch of no step."""
    n, b = int(num_examples), int(batch_size)
    if b <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    steps = n // b if drop_last else -(-n // b)
    if steps == 0:
        raise ValueError(
            f"batch_size {b} is larger than the training set ({n} examples); pass "
            "drop_last=False to train on one partial batch.")
    return steps


def plan_epoch(state: TrainState, n: int, batch_size: int, drop_last: bool = True,
               order_key: jax.Array | None = None) -> "EpochPlan":
    """The first part of an epoch over ``n`` examples: its batch order and every step's keys.

    The order is a permutation drawn from ``order_key`` (else from ``state.key``); with
    ``drop_last=False`` the last batch is padded with the shuffle's first examples (real,
    finite rows) and masked out. Every step's (loss, binarisation) keys are drawn at once,
    the same keys as splitting ``fold_in(epoch_key, i)`` inside step ``i``.
    """
    num_steps = steps_per_epoch(n, batch_size, drop_last)
    next_key, perm_key, epoch_key = jax.random.split(state.key, 3)
    if order_key is not None:
        perm_key = order_key
    mask = None
    if drop_last:
        perm = jax.random.permutation(perm_key, n)[: num_steps * batch_size]
    else:
        slots = jnp.arange(num_steps * batch_size)
        perm = jnp.take(jax.random.permutation(perm_key, n), slots % n)
        mask = (slots < n).astype(jnp.float32).reshape(num_steps, batch_size)
    perm = perm.reshape(num_steps, batch_size)
    step_keys = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(epoch_key, i)))(
        jnp.arange(num_steps))
    return EpochPlan(perm, step_keys[:, 0], step_keys[:, 1], next_key, mask)


def make_train_epoch(loss_fn: LossFn | Objective, optimizer: optax.GradientTransformation,
                     batch_size: int, *, dynamic_binarization: bool = False,
                     batch_sharding: jax.sharding.Sharding | None = None,
                     jit: bool = True, model: Any = None, validate: bool = True,
                     step_metrics: bool = False, drop_last: bool = True):
    """Build ``epoch(state, data, order_key=None) -> (state, metrics, step_losses)``.

    Args:
      loss_fn: pure ``loss(params, key, x) -> (loss, aux)``, or a stateful
        :class:`~jvae.objectives.base.Objective`, whose estimator state
        (``state.estimator``) is threaded through the scan and whose trainable estimator
        parameters are updated by ``optimizer`` with the model. A loss that takes a ``step``
        keyword (a KL warm-up schedule, :func:`jvae.objectives.accepts_step`) gets each
        step's optimiser step number, ``state.step`` plus its index in the epoch (int32), so
        a resumed state continues its schedule exactly; other losses get nothing new.
      optimizer: optax transformation matching ``state.opt_state``.
      batch_size: examples per step; the epoch takes ``N // batch_size`` steps.
      dynamic_binarization: draw a fresh ``Bernoulli(x)`` binarisation of every batch inside
        the step, from the step's key (Salakhutdinov & Murray, 2008).
      batch_sharding: optional sharding of each ``[batch_size, ...]`` batch (e.g.
        ``NamedSharding(mesh, P("data"))``): with parameters replicated, the compiler splits
        every step over the devices and all-reduces the gradients (data parallelism).
      jit: compile the epoch (disable to vmap it first, or for debugging).
      model: the :class:`~jvae.models.vae.VAE` the loss trains (pass it: nothing is read off
        the loss function). With it the data check also covers the shape ``[N, *data_shape]``
        and the support of the model's likelihood (e.g. ``[0, 1]`` for Bernoulli); without
        it, only dtype, finiteness and a non-empty leading axis are checked (and ``[0, 1]``
        with ``dynamic_binarization``, whose pixels are probabilities).
      validate: check the training array each call, before the compiled epoch, with
        :func:`jvae.data.check_data`: a JAX array (or read-only numpy array) is checked once
        per distinct array object, by one jitted ``min``/``max`` reduction, and then
        remembered through a weak reference; tracers (the epoch called inside your own
        ``jit``/``vmap``) are not checked. ``False`` skips it.
      step_metrics: return every step's ``aux`` (a dict of ``[S]`` arrays, ``"loss"``
        among them) instead of the per-step losses alone.
      drop_last: ``True`` (default): ``N // batch_size`` full batches, the rest of the
        shuffle dropped. ``False``: ``ceil(N / batch_size)`` steps, the last batch padded to
        ``batch_size`` and masked (PyTorch's ``drop_last=False``); the loss must take a
        ``mask`` keyword (jvae's objectives do, see
        :func:`jvae.objectives.base.batch_mean`), else ``ValueError``. The epoch's metrics
        are the mean over its steps, the partial one counting as one step.

    Raises:
      ValueError: (when called) invalid training data: one line naming the problem, e.g.
        ``training data: 1 non-finite values (NaN/Inf) of ...; first at index (3, 0)``.

    Returns:
      A :class:`TrainEpoch`: a callable taking a :class:`TrainState`, the training array ``[N, *data_shape]``
      (already on the device; float, or uint8 pixels converted per batch to ``v / 255``) and an optional ``order_key`` and returning the new state, the
      per-epoch means of every ``aux`` entry (``loss_fn``'s ``aux`` must contain ``"loss"``),
      and the per-step losses ``[N // batch_size]`` (to locate a non-finite step on the host).
      The batch order is drawn from ``order_key`` when given, else from the state's key. Runs
      given the same ``order_key`` see the same batches. When vmapping over many runs, pass
      the key repeated along the run axis (``in_axes=0``) rather than once (``None``): each
      run then gathers its own copy of the batch and every layer is a batched product, while
      an unbatched batch turns the first layer into one wide product whose weight-sized
      transposes slow the CPU epoch (see ``jvae.runs.setup.order_key``). With ``jit=True``
      its ``lower`` method is the jitted epoch's (ahead-of-time compilation skips the check).

      The epoch is also available in two parts, for evaluating between chunks of steps
      without a host round-trip per step: ``epoch.plan(state, data, order_key=None) ->``
      :class:`EpochPlan` draws the batch order and every step's keys, and
      ``epoch.run_steps(state, data, *plan.rows()) -> (state, step_aux)`` (``batches,
      loss_keys, bin_keys`` and, with ``drop_last=False``, ``mask``) runs those steps (any contiguous slice of the plan's rows; ``state.step`` advances by
      the slice's length, ``state.key`` is left alone). Running all of a plan's rows, in
      chunks or at once, then ``state._replace(key=plan.next_key)``, is the epoch itself:
      the same arithmetic in the same order. Both parts are jitted with ``jit=True`` and
      are not data-checked.
    """
    batch_size = check_count(batch_size, "batch_size")
    if not drop_last and not accepts_mask(loss_fn):
        raise ValueError(
            f"drop_last=False pads the last batch and needs a loss that takes a mask keyword "
            f"(loss(..., mask=None)); {getattr(loss_fn, '__name__', type(loss_fn).__name__)} "
            "does not. jvae's objectives take one; or keep drop_last=True.")
    objective = as_objective(loss_fn)
    stepped = accepts_step(objective)   # a scheduled loss: it takes the optimiser step

    def joint_loss(tree, est_state, key, x, mask=None, step=None):
        params, est_params = tree
        kwargs = {} if step is None else {"step": step}
        if mask is None:
            return objective.loss(params, EstimatorState(est_params, est_state), key, x,
                                  **kwargs)
        return objective.loss(params, EstimatorState(est_params, est_state), key, x, mask=mask,
                              **kwargs)

    grad_fn = jax.value_and_grad(joint_loss, has_aux=True)

    def plan(state: TrainState, data: jax.Array, order_key: jax.Array | None = None):
        return plan_epoch(state, data.shape[0], batch_size, drop_last, order_key)

    def run_steps(state: TrainState, data: jax.Array, batches, loss_keys, bin_keys,
                  mask=None):
        if not drop_last and mask is None:
            raise ValueError("This epoch keeps the last partial batch (drop_last=False): "
                             "run_steps needs the plan's mask (EpochPlan.rows()).")

        def step(carry, inputs):
            params, opt_state, est = carry
            idx, (loss_key, bin_key), m, t = inputs
            x = pixels_to_unit(jnp.take(data, idx, axis=0))   # uint8: per batch, exactly
            if batch_sharding is not None:
                x = jax.lax.with_sharding_constraint(x, batch_sharding)
            if dynamic_binarization:
                x = jax.random.bernoulli(bin_key, x).astype(x.dtype)
            (_, (aux, new_est)), grads = grad_fn((params, est.params), est.state, loss_key, x,
                                                 m, t)
            if not jax.tree_util.tree_leaves(est.params):
                grads = grads[0]
            tree = trainable(params, est)
            updates, opt_state = optimizer.update(grads, opt_state, tree)
            params, est_params = _untrainable(optax.apply_updates(tree, updates), est)
            return (params, opt_state, EstimatorState(est_params, new_est.state)), aux

        # A scheduled loss gets each step's optimiser step number: state.step + its index.
        steps = state.step + jnp.arange(batches.shape[0], dtype=jnp.int32) if stepped else None
        (params, opt_state, est), aux = jax.lax.scan(
            step, (state.params, state.opt_state, state.estimator),
            (batches, (loss_keys, bin_keys), mask, steps))
        return state._replace(params=params, opt_state=opt_state, estimator=est,
                              step=state.step + batches.shape[0]), aux

    def epoch(state: TrainState, data: jax.Array, order_key: jax.Array | None = None):
        p = plan(state, data, order_key)
        new_state, aux = run_steps(state, data, *p.rows())
        new_state = new_state._replace(key=p.next_key)
        metrics = {k: jnp.mean(v) for k, v in aux.items()}
        return new_state, metrics, (aux if step_metrics else aux["loss"])

    if not validate:
        model = None
    support = likelihood_support(model) if model is not None else None
    override = None  # None: the model's own support (or none without a model)
    if dynamic_binarization and (support is None or support.low < 0 or support.high > 1):
        override = UNIT_INTERVAL  # the pixels are Bernoulli probabilities
    return TrainEpoch(epoch=training_jit(epoch) if jit else epoch,
                      plan=jax.jit(plan) if jit else plan,
                      run_steps=training_jit(run_steps) if jit else run_steps,
                      validate=bool(validate), model=model, support=override)


@dataclasses.dataclass(frozen=True)
class TrainEpoch:
    """The epoch :func:`make_train_epoch` builds: call it as
    ``epoch(state, data, order_key=None) -> (state, metrics, step_losses)``.

    Attributes:
      epoch: the epoch itself (jitted or not), without the data check.
      plan: ``plan(state, data, order_key=None) -> EpochPlan``, the first part.
      run_steps: ``run_steps(state, data, batches, loss_keys, bin_keys, mask=None) ->
        (state, step_aux)``, the second part (``EpochPlan.rows()`` gives its arrays).
      validate: whether a call checks the training array first.
      model: the model whose likelihood's support the check uses (or ``None``).
      support: the support checked instead of the model's (dynamic binarisation's [0, 1]).
    """

    epoch: Callable
    plan: Callable
    run_steps: Callable
    validate: bool = True
    model: Any = None
    support: Any = None

    def __call__(self, state: TrainState, data: jax.Array, *args, **kwargs):
        if self.validate:    # uint8 pixels: every value maps into [0, 1]; shape checked only
            check_data(data, model=self.model, support=self.support, name="training data",
                       values=getattr(data, "dtype", None) != jnp.uint8)
        return self.epoch(state, data, *args, **kwargs)

    def lower(self, *args, **kwargs):
        """The jitted epoch's ``lower`` (ahead-of-time compilation; skips the data check)."""
        if not hasattr(self.epoch, "lower"):
            raise TypeError("lower() needs an epoch built with jit=True.")
        return self.epoch.lower(*args, **kwargs)

