"""Every combination of model kind, prior, posterior and objective that config validation
accepts builds and trains; every other one is refused in one line naming the fields.

The combinations are enumerated at collection time through ``validate_config`` (cheap);
each accepted one trains one step of a tiny 2-D run through the run's own builders
(``build_run``, ``initial_state``, ``build_loss``, ``make_train_epoch``).
"""

import itertools

import jax
import numpy as np
import pytest

from jvae.runs import builders, default_config, schema, validate_config
from jvae.runs.setup import build_run, initial_state
from jvae.training import make_train_epoch

FLOWS = ("planar", "iaf", "coupling")


def _config(kind, prior, posterior, objective):
    c = default_config()
    c.dataset.name, c.dataset.count, c.dataset.eval_split = "gaussian2d", 200, "test"
    c.model.likelihood, c.latent_dim, c.batch_size, c.figures = "gaussian", 2, 16, False
    c.model.encoder_hidden = c.model.decoder_hidden = (8,)
    c.model.kind, c.model.prior, c.model.posterior = kind, prior, posterior
    c.objective.name = objective
    if prior != "standard" and kind == "vae":
        c.model.prior_components = 3
    if posterior in FLOWS:
        c.model.flow_layers = 1
    if posterior in ("iaf", "coupling"):
        c.model.flow_hidden = 8
    if objective in ("iwae", "vimco"):
        c.objective.num_samples = 2
    return c


def _verdicts():
    accepted, refused = [], []
    for combo in itertools.product(schema.KINDS, schema.PRIORS, schema.POSTERIORS,
                                   schema.OBJECTIVES):
        try:
            validate_config(_config(*combo))
        except ValueError as e:
            refused.append((combo, str(e)))
        else:
            accepted.append(combo)
    return accepted, refused


ACCEPTED, REFUSED = _verdicts()

#: Run by default: every prior, posterior and objective at least once, VampPrior + IAF and
#: the autoencoder; the rest of ACCEPTED are marked exhaustive (``pytest -m exhaustive``).
REPRESENTATIVES = {("vae", "standard", "gaussian", "elbo"), ("vae", "mixture", "planar", "iwae"),
                   ("vae", "vamp", "iaf", "vimco"), ("vae", "standard", "coupling", "nvil"),
                   ("vae", "vamp", "mixture", "mixture"), ("vae", "mixture", "gaussian", "sfe"),
                   ("autoencoder", "standard", "gaussian", "elbo")}


def _param(combo):
    marks = () if combo in REPRESENTATIVES else (pytest.mark.exhaustive,)
    return pytest.param(*combo, id="-".join(combo), marks=marks)


def test_the_representatives_cover_every_prior_posterior_and_objective():
    for position in range(4):
        assert {c[position] for c in REPRESENTATIVES} == {c[position] for c in ACCEPTED}
    assert REPRESENTATIVES <= set(ACCEPTED)


def test_the_accepted_combinations_are_those_that_can_be_built():
    # A VAE: 3 priors x (5 objectives with each reparameterisable posterior, gaussian and
    # the 3 flows, + 4 with the mixture posterior: nvil, sfe, mixture, vimco); an
    # autoencoder: its own code and loss.
    assert len(ACCEPTED) == 3 * (5 * 4 + 4) + 1
    assert [c for c in ACCEPTED if c[0] == "autoencoder"] == [
        ("autoencoder", "standard", "gaussian", "elbo")]


@pytest.mark.parametrize("kind, prior, posterior, objective", [_param(c) for c in ACCEPTED])
def test_an_accepted_combination_trains_one_step(kind, prior, posterior, objective):
    config = _config(kind, prior, posterior, objective)
    datasets, model, optimizer = build_run(config)
    state = initial_state(config, model, optimizer, datasets.train[:1])
    epoch = make_train_epoch(builders.build_loss(config, model), optimizer, 16, model=model)
    new, _, losses = epoch(state, jax.numpy.asarray(datasets.train[:16]))
    assert int(new.step) == 1 and np.all(np.isfinite(np.asarray(losses)))
    moved = [bool(np.any(np.asarray(a) != np.asarray(b)))
             for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params))]
    assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(new.params))
    assert sum(moved) >= len(moved) // 2, moved


@pytest.mark.parametrize("combo, message", REFUSED, ids=["-".join(c) for c, _ in REFUSED])
def test_a_refused_combination_names_its_fields(combo, message):
    kind, prior, posterior, objective = combo
    assert "\n" not in message
    named = {"model.kind": kind != "vae", "model.prior": prior != "standard",
             "model.posterior": posterior != "gaussian", "objective": objective != "elbo"}
    assert any(field in message for field, changed in named.items() if changed), message


@pytest.mark.parametrize("field, value, fragment", [
    ("model.prior", "vamp", "config.model.prior = 'vamp' would be ignored"),
    ("model.prior", "mixture", "an autoencoder has no prior"),
    ("model.prior_components", 3, "config.model.prior_components = 3 would be ignored"),
    ("objective.num_samples", 4, "config.objective.num_samples = 4 would be ignored"),
    ("objective.beta", 0.5, "config.objective.beta = 0.5 would be ignored"),
    ("model.posterior_scale", "exp", "an autoencoder's code is a point"),
])
def test_an_autoencoder_refuses_the_fields_it_would_ignore(field, value, fragment):
    config = _config("autoencoder", "standard", "gaussian", "elbo")
    node, leaf = config, field.split(".")
    for part in leaf[:-1]:
        node = node[part]
    node[leaf[-1]] = value
    with pytest.raises(ValueError) as info:
        validate_config(config)
    assert fragment in str(info.value) and "model.kind is 'autoencoder'" in str(info.value)


@pytest.mark.parametrize("changes, fragment", [
    ({"objective.estimator": "dreg"}, "applies to objective 'iwae'"),
    ({"objective.name": "iwae", "objective.num_samples": 2, "objective.beta": 0.5},
     "IWAE and VIMCO have no beta"),
    ({"objective.name": "iwae", "objective.num_samples": 2, "sweep.beta": (0.5, 1.0)},
     "config.sweep.beta = (0.5, 1.0) would be ignored"),
    ({"objective.cv_decay": 0.5, "objective.name": "sfe"}, "'centred' and 'scaled'"),
    ({"model.flow_layers": 3}, "the flow posteriors"),
    ({"model.posterior_components": 4}, "model.posterior 'mixture'"),
    ({"model.fixed_scale": 0.5}, "model.gaussian_scale 'fixed'"),
    ({"optim.rmsprop_decay": 0.5}, "optimiser 'rmsprop'"),
    ({"dataset.threshold": 0.3}, "dataset.binarize 'static'"),
    ({"dataset.dev_seed": 3}, "a dev split"),
    ({"eval.ll_every": 2}, "eval.ll_samples > 1"),
    ({"shard_seeds": True}, "several seeds"),
])
def test_a_field_the_run_would_ignore_is_refused(changes, fragment):
    config = _config("vae", "standard", "gaussian", "elbo")
    for field, value in changes.items():
        node, leaf = config, field.split(".")
        for part in leaf[:-1]:
            node = node[part]
        node[leaf[-1]] = value
    with pytest.raises(ValueError, match="would be ignored") as info:
        validate_config(config)
    assert fragment in str(info.value) and "\n" not in str(info.value)
