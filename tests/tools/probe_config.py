"""The probe's new config cases (issue 28): every config field with a value of the wrong
type, every field set where the run would ignore it, and every combination of model kind,
prior, posterior and objective (accepted ones train one step, refused ones name a field).
Used by :mod:`tests.tools.probe_faults` (``--set new``)."""

from __future__ import annotations

import itertools

import numpy as np

from tests.tools.probe_faults import Case


def config_cases() -> list[Case]:
    """A wrong-typed value in every field, and every field set where it would be ignored."""
    import ml_collections

    from jvae.runs import default_config, validate_config
    from jvae.runs.fields import RULES

    def leaves(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, ml_collections.ConfigDict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    def wrong(default):
        if isinstance(default, bool):
            return "yes"
        if isinstance(default, int):
            return 2.5
        if isinstance(default, float):
            return "big"
        if isinstance(default, str):
            return 7
        return "not a tuple"

    def setting(path, value, base=()):
        def run():
            c = default_config()
            for p, v in (*base, (path, value)):
                _set(c, p, v)
            validate_config(c)
        return run

    cases = [Case(f"config type: {path}={wrong(d)!r}", setting(path, wrong(d)),
                  mentions=(f"config.{path}",))
             for path, d in leaves(default_config())]
    ae = (("model.kind", "autoencoder"),)
    values = {
        "model.prior": ("mixture", ae), "model.prior_components": (3, ()),
        "model.posterior_scale": ("exp", ae), "model.posterior_components": (3, ()),
        "model.flow_layers": (3, ()), "model.flow_hidden": (50, ()),
        "model.gaussian_scale": ("fixed", ()), "model.fixed_scale": (0.5, ()),
        "objective.beta": (0.5, (("objective.name", "iwae"),)),
        "sweep.beta": ((0.5, 1.0), (("objective.name", "iwae"),)),
        "objective.kl": ("mc", (("objective.name", "iwae"),)),
        "objective.num_samples": (2, ae), "objective.estimator": ("dreg", ()),
        "objective.cv_decay": (0.5, (("objective.name", "sfe"),)),
        "objective.baseline_hidden": ((8,), (("objective.name", "sfe"),)),
        "objective.baseline_learning_rate": (1e-4, (("objective.name", "sfe"),)),
        "optim.eps": (1e-6, (("optim.name", "sgd"),)), "optim.rmsprop_decay": (0.5, ()),
        "dataset.threshold": (0.3, ()), "dataset.data_seed": (1, ()),
        "dataset.mode": ("multivariate", ()), "dataset.count": (100, ()),
        "dataset.resize": (32, (("dataset.name", "gaussian2d"),
                                ("model.likelihood", "gaussian"))),
        "dataset.data_dir": ("/x", (("dataset.name", "gaussian2d"),
                                    ("model.likelihood", "gaussian"))),
        "dataset.download": (True, (("dataset.name", "binarized_mnist"),)),
        "dataset.verify_checksums": (False, (("dataset.name", "gaussian2d"),
                                             ("model.likelihood", "gaussian"))),
        "dataset.tfds_image_key": ("img", ()), "dataset.dev_seed": (3, ()),
        "eval.dev_ll_samples": (5, ()), "eval.dev_final_ll_samples": (5, ()),
        "eval.ll_every": (2, ()), "shard_seeds": (True, ()),
        "dataset.key": ("images", ()), "dataset.labels_key": ("labels", ()),
        "dataset.test": ("/x/test.npz", ()), "dataset.validation_seed": (3, ()),
    }
    missing = sorted({r.field for r in RULES} - set(values))
    assert not missing, f"probe: no ignored-field case for {missing}"
    cases += [Case(f"config ignored: {field}={value!r}"
                   + (f" with {', '.join(f'{p}={v!r}' for p, v in base)}" if base else ""),
                   setting(field, value, base), mentions=(f"config.{field}", "would be ignored"))
              for field, (value, base) in values.items()]
    return cases


def combination_cases() -> list[Case]:
    """Every model kind x prior x posterior x objective: accepted ones train a step, refused
    ones name a field that makes them so."""
    from jvae.runs import schema, validate_config
    from tests.test_combinations import _config as config     # the test's tiny 2-D runs

    def one_step(c):
        import jax

        from jvae.runs import builders
        from jvae.runs.setup import build_run, initial_state
        from jvae.training import make_train_epoch

        datasets, model, opt = build_run(c)
        state = initial_state(c, model, opt, datasets.train[:1])
        epoch = make_train_epoch(builders.build_loss(c, model), opt, 16, model=model)
        new, _, losses = epoch(state, jax.numpy.asarray(datasets.train[:16]))
        return state, new, np.asarray(losses)

    def trained(out):
        state, new, losses = out
        import jax

        moved = [bool(np.any(np.asarray(a) != np.asarray(b))) for a, b in
                 zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params))]
        return bool(np.all(np.isfinite(losses))) and sum(moved) >= len(moved) // 2

    cases = []
    for combo in itertools.product(schema.KINDS, schema.PRIORS, schema.POSTERIORS,
                                   schema.OBJECTIVES):
        c = config(*combo)
        name = "combination " + "/".join(combo)
        try:
            validate_config(c)
        except ValueError as e:
            fields = [f for f, changed in (("model.kind", combo[0] != "vae"),
                                           ("model.prior", combo[1] != "standard"),
                                           ("model.posterior", combo[2] != "gaussian"),
                                           ("objective", combo[3] != "elbo")) if changed]
            named = [f for f in fields if f in str(e)]
            cases.append(Case(f"{name}: refused", (lambda c=c: validate_config(c)),
                              mentions=tuple(named[:1] or fields[:1])))
            continue
        known = "VampPrior + IAF: issue 27" if combo[1:3] == ("vamp", "iaf") else ""
        cases.append(Case(f"{name}: accepted, one step", (lambda c=c: one_step(c)),
                          expect="ok", check=trained, timeout=300, known=known))
    return cases


def _set(config, path: str, value) -> None:
    node = config
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    with node.ignore_type():
        node[leaf] = value
