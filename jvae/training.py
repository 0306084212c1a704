"""Training primitives: the train state, optimisers and the jitted ``lax.scan`` epoch.

An epoch is one compiled program: the on-device data array is shuffled with a key from the
state, cut into ``N // batch_size`` batches (the remainder of a shuffled epoch is dropped, so
every step has the same shape), and ``lax.scan`` runs the optimiser steps. Nothing goes back
to the host until the epoch ends.

Before the compiled epoch runs, a concrete training array is checked once
(:func:`jvae.data.check_data`): a NaN pixel or integer images raise a one-line ``ValueError``
instead of returning NaN parameters or training on nonsense.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jvae.data.validate import UNIT_INTERVAL, check_data, likelihood_support
from jvae.objectives.base import EstimatorState, Objective, as_objective

__all__ = ["TrainState", "EpochPlan", "make_optimizer", "make_train_epoch", "NonFiniteLossError",
           "first_non_finite", "set_learning_rate", "trainable"]

LossFn = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, dict]]


class TrainState(NamedTuple):
    """Everything that changes during training; a pytree, so it can be vmapped and saved.

    Attributes:
      params: model parameters.
      opt_state: optimiser state of :func:`trainable` ``(params, estimator)``.
      step: number of optimiser steps taken (int32 scalar).
      key: typed PRNG key consumed by the next epoch.
      estimator: the objective's :class:`~jvae.objectives.base.EstimatorState` (control
        variate statistics, a learned baseline); empty for stateless objectives.
    """

    params: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array
    estimator: EstimatorState = EstimatorState()

    @classmethod
    def create(cls, params: Any, optimizer: optax.GradientTransformation,
               key: jax.Array, estimator: EstimatorState = EstimatorState()) -> "TrainState":
        """A fresh state; ``estimator`` comes from ``objective.init(key, x_example)``."""
        opt_state = optimizer.init(trainable(params, estimator))
        return cls(params, opt_state, jnp.zeros((), jnp.int32), key, estimator)


def trainable(params: Any, estimator: EstimatorState = EstimatorState()) -> Any:
    """The pytree the optimiser updates: the model parameters, or ``(params, est_params)``
    when the estimator has trainable parameters (e.g. a learned baseline, whose leaves sit
    under a ``"baseline"`` key so a parameter group can give it its own learning rate)."""
    if jax.tree_util.tree_leaves(estimator.params):
        return (params, estimator.params)
    return params


def _untrainable(tree: Any, estimator: EstimatorState) -> tuple[Any, Any]:
    if jax.tree_util.tree_leaves(estimator.params):
        return tree
    return tree, estimator.params


class NonFiniteLossError(FloatingPointError):
    """Raised when a training loss is NaN or infinite; names the epoch and step."""

    def __init__(self, epoch: int, step_in_epoch: int, global_step: int, detail: str = ""):
        self.epoch, self.step_in_epoch, self.global_step = epoch, step_in_epoch, global_step
        super().__init__(
            f"Training loss became non-finite at epoch {epoch}, step {step_in_epoch} of that "
            f"epoch (global step {global_step}). {detail}".strip())


def first_non_finite(values) -> int | None:
    """Index of the first NaN/Inf in a 1-D array of per-step losses, or ``None``."""
    import numpy as np

    bad = np.flatnonzero(~np.isfinite(np.asarray(values)))
    return int(bad[0]) if bad.size else None


def _group_labels(params: Any, groups: Mapping[str, float]) -> Any:
    """Label each leaf by the first group whose name appears as a component of its path."""

    def label(path, _):
        names = [str(getattr(p, "key", getattr(p, "name", p))) for p in path]
        for group in groups:
            if any(re.fullmatch(group, n) for n in names):
                return group
        return "__default__"

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(learning_rate: float, *, name: str = "adam", grad_clip: float = 0.0,
                   param_groups: Mapping[str, float] | None = None,
                   schedule: Callable[[jax.Array], jax.Array] | None = None,
                   inject: bool = False, eps: float | None = None,
                   weight_decay: float = 0.0, rmsprop_decay: float | None = None
                   ) -> optax.GradientTransformation:
    """Build the optax optimiser.

    Args:
      learning_rate: default learning rate (> 0).
      name: ``"adam"``, ``"adamw"``, ``"rmsprop"`` or ``"sgd"``.
      grad_clip: clip the global gradient norm to this value (0 disables).
      param_groups: per-parameter-group learning rates, ``{module name (regex): lr}``; a leaf
        belongs to the first group matching any component of its path (e.g. ``"encoder"`` or
        ``"posterior"``), the rest use ``learning_rate``. Built with ``optax.multi_transform``,
        the notebook's ``OptCollection`` done declaratively.
      schedule: optional multiplier ``step -> factor`` applied to every learning rate.
      inject: build the default group with ``optax.inject_hyperparams`` so that its learning
        rate lives in the optimiser state (see :func:`set_learning_rate`), e.g. to vmap a sweep
        over learning rates.
      eps: the epsilon of Adam/AdamW/RMSprop (``None``: optax's default; the IWAE paper
        uses 1e-4 with Adam).
      weight_decay: L2 penalty added to every gradient before the optimiser (``grad + wd *
        param``, PyTorch's ``weight_decay`` for Adam/RMSprop/SGD; 0 disables). For
        ``"adamw"`` it is AdamW's decoupled decay instead.
      rmsprop_decay: RMSprop's squared-gradient averaging (optax default 0.9; PyTorch's
        ``alpha`` default 0.99).
    """
    makers = {"adam": optax.adam, "adamw": optax.adamw, "rmsprop": optax.rmsprop,
              "sgd": optax.sgd}
    if name not in makers:
        raise ValueError(f"Unknown optimizer {name!r}; choose one of {sorted(makers)}.")
    groups = dict(param_groups or {})
    for group, lr in [("default", learning_rate), *groups.items()]:
        if not lr > 0:
            raise ValueError(f"Learning rate of group {group!r} must be positive, got {lr!r}.")
    if grad_clip < 0:
        raise ValueError(f"grad_clip must be >= 0, got {grad_clip!r}.")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}.")
    if rmsprop_decay is not None:
        if not 0 < rmsprop_decay < 1:
            raise ValueError(f"rmsprop_decay must be in (0, 1), got {rmsprop_decay!r}.")
        makers["rmsprop"] = functools.partial(makers["rmsprop"], decay=float(rmsprop_decay))
    if weight_decay > 0 and name == "adamw":
        makers["adamw"] = functools.partial(makers["adamw"], weight_decay=float(weight_decay))
    if eps is not None:
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}.")
        if name != "sgd":
            makers[name] = functools.partial(makers[name], eps=float(eps))

    def base(lr: float, injected: bool = False) -> optax.GradientTransformation:
        if injected:
            if schedule is not None:
                raise ValueError("inject=True cannot be combined with a schedule.")
            return optax.inject_hyperparams(makers[name])(learning_rate=lr)
        rate = (lambda count: lr * schedule(count)) if schedule is not None else lr
        return makers[name](rate)

    if groups:
        transforms = {g: base(lr) for g, lr in groups.items()}
        transforms["__default__"] = base(learning_rate, inject)
        opt = optax.multi_transform(transforms, lambda p: _group_labels(p, groups))
    else:
        opt = base(learning_rate, inject)
    if weight_decay > 0 and name != "adamw":
        opt = optax.chain(optax.add_decayed_weights(float(weight_decay)), opt)
    if grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(grad_clip), opt)
    return opt


def set_learning_rate(opt_state: Any, learning_rate) -> Any:
    """Replace the injected learning rate(s) in an optimiser state built with ``inject=True``.

    Works on stacked (vmapped) states too: ``learning_rate`` of shape ``[H]`` sets one rate per
    sweep element. Raises ``ValueError`` if the state holds no injected learning rate.
    """
    found = []

    def replace(path, leaf):
        if any(getattr(p, "key", None) == "learning_rate" for p in path):
            found.append(path)
            return jnp.broadcast_to(jnp.asarray(learning_rate, leaf.dtype), leaf.shape)
        return leaf

    new = jax.tree_util.tree_map_with_path(replace, opt_state)
    if not found:
        raise ValueError("The optimiser state has no injected learning rate; build the "
                         "optimiser with make_optimizer(..., inject=True).")
    return new


class EpochPlan(NamedTuple):
    """What one epoch will do, drawn before any step runs (see :func:`make_train_epoch`).

    Attributes:
      batches: ``[S, batch_size]`` int32 indices into the training array, one row per step.
      loss_keys: ``[S]`` typed keys, the loss's key of each step.
      bin_keys: ``[S]`` typed keys, each step's dynamic-binarisation key.
      next_key: the state's key after the epoch.
    """

    batches: jax.Array
    loss_keys: jax.Array
    bin_keys: jax.Array
    next_key: jax.Array


def make_train_epoch(loss_fn: LossFn | Objective, optimizer: optax.GradientTransformation,
                     batch_size: int, *, dynamic_binarization: bool = False,
                     batch_sharding: jax.sharding.Sharding | None = None,
                     jit: bool = True, model: Any = None, validate: bool = True,
                     step_metrics: bool = False):
    """Build ``epoch(state, data, order_key=None) -> (state, metrics, step_losses)``.

    Args:
      loss_fn: pure ``loss(params, key, x) -> (loss, aux)``, or a stateful
        :class:`~jvae.objectives.base.Objective`, whose estimator state
        (``state.estimator``) is threaded through the scan and whose trainable estimator
        parameters are updated by ``optimizer`` with the model.
      optimizer: optax transformation matching ``state.opt_state``.
      batch_size: examples per step; the epoch takes ``N // batch_size`` steps.
      dynamic_binarization: draw a fresh ``Bernoulli(x)`` binarisation of every batch inside
        the step, from the step's key (Salakhutdinov & Murray, 2008).
      batch_sharding: optional sharding of each ``[batch_size, ...]`` batch (e.g.
        ``NamedSharding(mesh, P("data"))``): with parameters replicated, the compiler splits
        every step over the devices and all-reduces the gradients (data parallelism).
      jit: compile the epoch (disable to vmap it first, or for debugging).
      model: the :class:`~jvae.model.VAE` the loss trains (default: ``loss_fn.model`` if the
        loss carries one). With it the data check also covers the shape ``[N, *data_shape]``
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

    Raises:
      ValueError: (when called) invalid training data: one line naming the problem, e.g.
        ``training data: 1 non-finite values (NaN/Inf) of ...; first at index (3, 0)``.

    Returns:
      A function taking a :class:`TrainState`, the training array ``[N, *data_shape]``
      (already on the device) and an optional ``order_key`` and returning the new state, the
      per-epoch means of every ``aux`` entry (``loss_fn``'s ``aux`` must contain ``"loss"``),
      and the per-step losses ``[N // batch_size]`` (to locate a non-finite step on the host).
      The batch order is drawn from ``order_key`` when given, else from the state's key. Runs
      given the same ``order_key`` see the same batches. When vmapping over many runs, pass
      the key repeated along the run axis (``in_axes=0``) rather than once (``None``): each
      run then gathers its own copy of the batch and every layer is a batched product, while
      an unbatched batch turns the first layer into one wide product whose weight-sized
      transposes slow the CPU epoch (see ``jvae.experiment``). With ``jit=True`` its
      ``lower`` attribute is the jitted epoch's (ahead-of-time compilation skips the check).

      The epoch is also available in two parts, for evaluating between chunks of steps
      without a host round-trip per step: ``epoch.plan(state, data, order_key=None) ->``
      :class:`EpochPlan` draws the batch order and every step's keys, and
      ``epoch.run_steps(state, data, batches, loss_keys, bin_keys) -> (state, step_aux)``
      runs those steps (any contiguous slice of the plan's rows; ``state.step`` advances by
      the slice's length, ``state.key`` is left alone). Running all of a plan's rows, in
      chunks or at once, then ``state._replace(key=plan.next_key)``, is the epoch itself:
      the same arithmetic in the same order. Both parts are jitted with ``jit=True`` and
      are not data-checked.
    """
    if int(batch_size) <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    batch_size = int(batch_size)
    objective = as_objective(loss_fn)

    def joint_loss(tree, est_state, key, x):
        params, est_params = tree
        return objective.loss(params, EstimatorState(est_params, est_state), key, x)

    grad_fn = jax.value_and_grad(joint_loss, has_aux=True)

    def plan(state: TrainState, data: jax.Array, order_key: jax.Array | None = None):
        n = data.shape[0]
        num_steps = n // batch_size
        if num_steps == 0:
            raise ValueError(
                f"batch_size {batch_size} is larger than the training set ({n} examples).")
        next_key, perm_key, epoch_key = jax.random.split(state.key, 3)
        if order_key is not None:
            perm_key = order_key
        perm = jax.random.permutation(perm_key, n)[: num_steps * batch_size]
        perm = perm.reshape(num_steps, batch_size)
        # Every step's (loss, binarisation) keys, drawn at once before the loop (the same
        # keys as splitting fold_in(epoch_key, i) inside step i, without its scalar RNG work).
        step_keys = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(epoch_key, i)))(
            jnp.arange(num_steps))
        return EpochPlan(perm, step_keys[:, 0], step_keys[:, 1], next_key)

    def run_steps(state: TrainState, data: jax.Array, batches, loss_keys, bin_keys):
        def step(carry, inputs):
            params, opt_state, est = carry
            idx, (loss_key, bin_key) = inputs
            x = jnp.take(data, idx, axis=0)
            if batch_sharding is not None:
                x = jax.lax.with_sharding_constraint(x, batch_sharding)
            if dynamic_binarization:
                x = jax.random.bernoulli(bin_key, x).astype(x.dtype)
            (_, (aux, new_est)), grads = grad_fn((params, est.params), est.state, loss_key, x)
            if not jax.tree_util.tree_leaves(est.params):
                grads = grads[0]
            tree = trainable(params, est)
            updates, opt_state = optimizer.update(grads, opt_state, tree)
            params, est_params = _untrainable(optax.apply_updates(tree, updates), est)
            return (params, opt_state, EstimatorState(est_params, new_est.state)), aux

        (params, opt_state, est), aux = jax.lax.scan(
            step, (state.params, state.opt_state, state.estimator),
            (batches, (loss_keys, bin_keys)))
        return state._replace(params=params, opt_state=opt_state, estimator=est,
                              step=state.step + batches.shape[0]), aux

    def epoch(state: TrainState, data: jax.Array, order_key: jax.Array | None = None):
        p = plan(state, data, order_key)
        new_state, aux = run_steps(state, data, p.batches, p.loss_keys, p.bin_keys)
        new_state = new_state._replace(key=p.next_key)
        metrics = {k: jnp.mean(v) for k, v in aux.items()}
        return new_state, metrics, (aux if step_metrics else aux["loss"])

    compiled = jax.jit(epoch) if jit else epoch
    compiled.plan = jax.jit(plan) if jit else plan
    compiled.run_steps = jax.jit(run_steps) if jit else run_steps
    if not validate:
        return compiled
    model = model if model is not None else getattr(loss_fn, "model", None)
    support = likelihood_support(model) if model is not None else None
    override = None  # None: the model's own support (or none without a model)
    if dynamic_binarization and (support is None or support.low < 0 or support.high > 1):
        override = UNIT_INTERVAL  # the pixels are Bernoulli probabilities

    @functools.wraps(epoch)
    def checked_epoch(state: TrainState, data: jax.Array, *args, **kwargs):
        check_data(data, model=model, support=override, name="training data")
        return compiled(state, data, *args, **kwargs)

    if jit:
        checked_epoch.lower = compiled.lower
    checked_epoch.plan, checked_epoch.run_steps = compiled.plan, compiled.run_steps
    return checked_epoch
