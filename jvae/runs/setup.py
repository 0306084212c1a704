"""What a run is made of, derived from its config alone: the data, model and optimiser, the
initial train state (stacked over seeds or swept values), every run element's seed and name,
and each epoch's batch-order key. :func:`jvae.runs.train_and_evaluate` and
:func:`jvae.runs.restore_run` build a run the same way through these functions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jvae.models.heads import marginal_logits, with_output_bias
from jvae.models.vae import init_params
from jvae.objectives.base import as_objective
from jvae.runs import builders, schema
from jvae.training import TrainState, set_learning_rate, steps_per_epoch

__all__ = ["run_keys", "build_run", "initial_state", "run_seeds", "run_labels", "order_key"]


def run_keys(seed: int):
    """The run's four keys of ``seed``: ``(init, train, eval, figure)``."""
    init_key, train_key, eval_key, figure_key = jax.random.split(jax.random.key(seed), 4)
    return init_key, train_key, eval_key, figure_key


def build_run(config: ml_collections.ConfigDict, stored: bool = False, rows: bool = False):
    """Validate ``config`` and build its ``(datasets, model, optimizer)``; ``stored``: the
    training array at its stored precision, ``rows``: the training split possibly as a
    reader (see :func:`jvae.runs.builders.load_data`)."""
    schema.validate_config(config)
    datasets = builders.load_data(config, stored=stored, rows=rows)
    model = builders.build_model(config, datasets.train.shape[1:])
    drop_last = bool(config.get("drop_last", True))
    if drop_last and len(datasets.train) < int(config.batch_size):
        raise ValueError(f"config.batch_size {config.batch_size} is larger than the training "
                         f"set ({len(datasets.train)} examples); config.drop_last=False trains "
                         "on one partial batch.")
    steps = steps_per_epoch(len(datasets.train), int(config.batch_size), drop_last)
    optimizer = builders.build_optimizer(config, steps_per_epoch=steps)
    return datasets, model, optimizer


def initial_state(config, model, optimizer, x_example, x_train=None) -> TrainState:
    """The train state of seed ``config.seed``; with ``num_seeds > 1`` the states of seeds
    ``seed .. seed + num_seeds - 1``, and for a sweep one state per swept value (all from
    ``config.seed``, with their own learning rate), stacked along a leading axis by ``vmap``.
    With ``config.model.likelihood_bias = "marginal"`` the Bernoulli head's output bias
    starts at the log-odds of ``x_train``'s pixel means ``[N, *data_shape]``
    (:func:`jvae.models.heads.marginal_logits`; zero when ``x_train`` is None, as for a
    template that a checkpoint overwrites)."""
    objective = as_objective(builders.build_loss(config, model))
    bias = None
    if config.model.get("likelihood_bias", "zero") == "marginal" and x_train is not None:
        bias = marginal_logits(x_train)

    def create(init_key, train_key):
        est = objective.init(jax.random.fold_in(init_key, 1), jnp.asarray(x_example))
        params = init_params(model, init_key, x_example)
        if bias is not None:
            params = with_output_bias(params, bias)
        return TrainState.create(params, optimizer, train_key, est)

    sweep = schema.sweep_values(config)
    keys = [run_keys(s) for s in run_seeds(config)]
    if sweep is None and len(keys) == 1:
        return create(keys[0][0], keys[0][1])
    state = jax.jit(jax.vmap(create))(jnp.stack([k[0] for k in keys]),
                                      jnp.stack([k[1] for k in keys]))
    if sweep is not None and config.sweep.learning_rate:
        state = state._replace(opt_state=set_learning_rate(state.opt_state,
                                                           sweep["learning_rate"]))
    return state


def run_seeds(config) -> list[int]:
    """The seed of every element of the run's leading axis (a sweep repeats ``seed``)."""
    sweep = schema.sweep_values(config)
    if sweep is not None:
        return [int(config.seed)] * len(sweep["beta"])
    return [int(config.seed) + i for i in range(int(config.num_seeds))]


def run_labels(config) -> list[str]:
    """A name for every element of the run's leading axis, for error messages."""
    sweep = schema.sweep_values(config)
    if sweep is None:
        return [f"seed {s}" for s in run_seeds(config)]
    return [f"sweep element {i} (beta={b:g}, learning_rate={lr:g})"
            for i, (b, lr) in enumerate(zip(sweep["beta"], sweep["learning_rate"]))]


def order_key(config, epoch: int, runs: int = 0) -> jax.Array:
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
