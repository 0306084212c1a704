"""Optimisers: optax transformations built from a name, with clipping, weight decay,
per-parameter-group learning rates and schedules; learning rates that live in the state for
a vmapped sweep."""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

__all__ = ["make_optimizer", "set_learning_rate", "OPTIMIZERS"]

#: The optimiser names :func:`make_optimizer` builds (``config.optim.name`` takes one).
OPTIMIZERS = ("adam", "adamw", "rmsprop", "adagrad", "sgd")


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
                   weight_decay: float = 0.0, rmsprop_decay: float | None = None,
                   initial_accumulator: float = 0.0) -> optax.GradientTransformation:
    """Build the optax optimiser.

    Args:
      learning_rate: default learning rate (> 0).
      name: ``"adam"``, ``"adamw"``, ``"rmsprop"``, ``"adagrad"`` or ``"sgd"``. Adagrad
        (Duchi et al., 2011; the optimiser of Kingma & Welling's VAE, which Lab 5's question
        compares with Adam) is ``optax.adagrad``: ``s += g^2``, ``p -= lr g / sqrt(s + eps)``
        (PyTorch's ``torch.optim.Adagrad`` divides by ``sqrt(s) + eps`` instead: the same
        step wherever ``s >> eps``).
      grad_clip: clip the global gradient norm to this value (0 disables).
      param_groups: per-parameter-group learning rates, ``{module name (regex): lr}``; a leaf
        belongs to the first group matching any component of its path (e.g. ``"encoder"`` or
        ``"posterior"``), the rest use ``learning_rate``. Built with ``optax.multi_transform``,
        the notebook's ``OptCollection`` done declaratively.
      schedule: optional multiplier ``step -> factor`` applied to every learning rate.
      inject: build the default group with ``optax.inject_hyperparams`` so that its learning
        rate lives in the optimiser state (see :func:`set_learning_rate`), e.g. to vmap a sweep
        over learning rates.
      eps: the epsilon of Adam/AdamW/RMSprop/Adagrad (``None``: optax's default; the IWAE
        paper uses 1e-4 with Adam).
      weight_decay: L2 penalty added to every gradient before the optimiser (``grad + wd *
        param``, PyTorch's ``weight_decay`` for Adam/RMSprop/SGD; 0 disables). For
        ``"adamw"`` it is AdamW's decoupled decay instead.
      rmsprop_decay: RMSprop's squared-gradient averaging (optax default 0.9; PyTorch's
        ``alpha`` default 0.99).
      initial_accumulator: Adagrad's starting sum of squared gradients (>= 0; default 0,
        PyTorch's ``initial_accumulator_value``; optax's own default is 0.1).
    """
    if not initial_accumulator >= 0:
        raise ValueError(f"initial_accumulator must be >= 0, got {initial_accumulator!r}.")
    makers = {"adam": optax.adam, "adamw": optax.adamw, "rmsprop": optax.rmsprop,
              "adagrad": functools.partial(optax.adagrad,
                                           initial_accumulator_value=float(initial_accumulator)),
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
