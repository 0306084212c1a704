"""The fields a run config may hold: their types, and where each applies.

:func:`check_types` runs first in :func:`jvae.runs.schema.validate_config`: every field must
have the type of its default in :func:`jvae.runs.defaults.default_config` (an integer field an
integer, not ``2.5``; a number field a number, not ``"big"``; a tuple field a tuple of the
right elements), and a config may hold no field the defaults do not declare (except the open
groups ``ranges`` and ``optim.param_groups``), so a misspelt or mistyped field in a config
file or a stored ``config.json`` fails in one line naming it instead of being truncated,
ignored or failing deep inside a builder.

:func:`check_ignored` runs last: a field set to anything but its default where the run
ignores it is refused, naming the field and what it applies to. A run built from ``model.prior='vamp'`` with ``model.kind='autoencoder'`` would build and
store a prior it never uses; ``objective.estimator='dreg'`` with ``objective.name='elbo'``
would train the plain ELBO. Both look like they did something. :func:`check_ignored`
compares each field of :data:`RULES` with its value in
:func:`jvae.runs.defaults.default_config` and raises ``ValueError`` when a changed field does
not apply to the run's combination of model kind, prior, posterior, likelihood, objective,
control variates, optimiser, data and evaluation. The networks' own settings are the
exception: a config may describe an MLP and a convolutional network (``model.encoder_hidden``
next to ``model.conv_encoder_features``, ``model.conv_preset``, ...) and choose one with
``model.encoder`` and ``model.decoder``, as the DPM2 config does for its CNN variant, so the
settings of the network kind not chosen are kept, not refused.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import ml_collections

__all__ = ["Rule", "RULES", "check_ignored", "check_types", "OPEN_FIELDS"]

_FLOWS = ("planar", "iaf", "coupling")
_BETA = ("elbo", "sfe", "mixture", "nvil")   # the objectives with a rate weight
_DOWNLOADABLE = ("mnist", "fashion_mnist", "cifar10")
_FILES = ("mnist", "fashion_mnist", "binarized_mnist", "cifar10")


class Rule(NamedTuple):
    """A field and when it applies.

    Attributes:
      field: the dotted field name (below ``config.``).
      applies: ``config -> bool``, whether the run uses the field.
      when: what it applies to, for the message (e.g. ``"objective 'iwae'"``).
      now: ``config -> str``, the run's setting that makes it unused, for the message.
    """

    field: str
    applies: Callable[[ml_collections.ConfigDict], bool]
    when: str
    now: Callable[[ml_collections.ConfigDict], str]


def _vae(c) -> bool:
    return c.model.kind == "vae"


def _is(*paths: str) -> Callable[[ml_collections.ConfigDict], str]:
    """``config -> "path is 'value'"`` (``"a is 'x', b 'y'"`` for several paths)."""
    def now(c):
        return ", ".join(f"{p} {'is ' * (i == 0)}{_get(c, p)!r}" for i, p in enumerate(paths))
    return now


def _user(c) -> bool:
    return str(c.dataset.name).startswith(("npy:", "npz:", "folder:"))


def _sweep(c) -> bool:
    return bool(tuple(c.sweep.beta) or tuple(c.sweep.learning_rate))


RULES: tuple[Rule, ...] = (
    # model
    Rule("model.prior", _vae, "model.kind 'vae' (an autoencoder has no prior)",
         _is("model.kind")),
    Rule("model.prior_components", lambda c: _vae(c) and c.model.prior in ("mixture", "vamp"),
         "model.prior 'mixture' or 'vamp'", _is("model.kind", "model.prior")),
    Rule("model.posterior_scale", _vae, "model.kind 'vae' (an autoencoder's code is a point)",
         _is("model.kind")),
    Rule("model.posterior_components", lambda c: _vae(c) and c.model.posterior == "mixture",
         "model.posterior 'mixture'", _is("model.kind", "model.posterior")),
    Rule("model.flow_layers", lambda c: _vae(c) and c.model.posterior in _FLOWS,
         "the flow posteriors 'planar', 'iaf' and 'coupling'", _is("model.kind", "model.posterior")),
    Rule("model.flow_hidden", lambda c: _vae(c) and c.model.posterior in ("iaf", "coupling"),
         "model.posterior 'iaf' or 'coupling'", _is("model.kind", "model.posterior")),
    Rule("model.gaussian_scale", lambda c: c.model.likelihood == "gaussian",
         "model.likelihood 'gaussian'", _is("model.likelihood")),
    Rule("model.fixed_scale", lambda c: c.model.likelihood == "gaussian"
         and c.model.gaussian_scale == "fixed", "model.gaussian_scale 'fixed' (with the "
         "gaussian likelihood)", lambda c: f"model.likelihood is {c.model.likelihood!r}, "
         f"model.gaussian_scale {c.model.gaussian_scale!r}"),
    # objective
    Rule("objective.beta", lambda c: _vae(c) and c.objective.name in ("elbo", "sfe", "mixture",
                                                              "nvil"),
         "the objectives 'elbo', 'sfe', 'mixture' and 'nvil' of a VAE (IWAE and VIMCO have "
         "no beta)",
         _is("model.kind", "objective.name")),
    Rule("sweep.beta", lambda c: _vae(c) and c.objective.name in ("elbo", "sfe", "mixture",
                                                              "nvil"),
         "the objectives 'elbo', 'sfe', 'mixture' and 'nvil' of a VAE (IWAE and VIMCO have "
         "no beta)",
         _is("model.kind", "objective.name")),
    Rule("objective.beta_schedule", lambda c: _vae(c) and c.objective.name in _BETA,
         "the objectives 'elbo', 'sfe', 'mixture' and 'nvil' of a VAE (IWAE and VIMCO have "
         "no beta)", _is("model.kind", "objective.name")),
    Rule("objective.kl_warmup_steps", lambda c: _vae(c) and c.objective.name in _BETA
         and c.objective.beta_schedule != "constant",
         "a KL warm-up (objective.beta_schedule 'linear' or 'cosine' of a beta objective)",
         _is("objective.name", "objective.beta_schedule")),
    Rule("objective.kl_warmup_start", lambda c: _vae(c) and c.objective.name in _BETA
         and c.objective.beta_schedule != "constant",
         "a KL warm-up (objective.beta_schedule 'linear' or 'cosine' of a beta objective)",
         _is("objective.name", "objective.beta_schedule")),
    Rule("objective.free_bits", lambda c: _vae(c) and c.objective.name == "elbo"
         and c.model.prior == "standard" and c.model.posterior == "gaussian"
         and c.objective.kl != "mc",
         "the objective 'elbo' with a rate that splits per latent dimension (model.prior "
         "'standard', model.posterior 'gaussian', objective.kl not 'mc')",
         _is("objective.name", "model.prior", "model.posterior", "objective.kl")),
    Rule("objective.kl", lambda c: _vae(c) and c.objective.name in ("elbo", "sfe"),
         "the objectives 'elbo' and 'sfe' of a VAE",
         _is("model.kind", "objective.name")),
    Rule("objective.num_samples", _vae, "model.kind 'vae' (an autoencoder's loss draws "
         "nothing)", _is("model.kind")),
    Rule("objective.estimator", lambda c: _vae(c) and c.objective.name == "iwae",
         "objective 'iwae'", _is("model.kind", "objective.name")),
    Rule("objective.cv_decay", lambda c: bool({"centred", "scaled"}
                                              & set(c.objective.control_variates)),
         "the control variates 'centred' and 'scaled'", _is("objective.control_variates")),
    Rule("objective.baseline_hidden", lambda c: "baseline" in c.objective.control_variates,
         "the control variate 'baseline'", _is("objective.control_variates")),
    Rule("objective.baseline_learning_rate",
         lambda c: "baseline" in c.objective.control_variates,
         "the control variate 'baseline'", _is("objective.control_variates")),
    # optimiser
    Rule("optim.eps", lambda c: c.optim.name != "sgd", "the optimisers 'adam', 'adamw' and "
         "'rmsprop'", _is("optim.name")),
    Rule("optim.rmsprop_decay", lambda c: c.optim.name == "rmsprop", "optimiser 'rmsprop'",
         _is("optim.name")),
    # data
    Rule("dataset.threshold", lambda c: c.dataset.binarize == "static",
         "dataset.binarize 'static'", _is("dataset.binarize")),
    Rule("dataset.data_seed", lambda c: c.dataset.name == "gaussian2d"
         or c.dataset.binarize == "dynamic", "the gaussian2d data and the fixed binarisation "
         "of evaluation and dev data (dataset.binarize 'dynamic')",
         lambda c: f"dataset.name is {c.dataset.name!r}, dataset.binarize "
         f"{c.dataset.binarize!r}"),
    Rule("dataset.mode", lambda c: c.dataset.name == "gaussian2d", "dataset 'gaussian2d'",
         _is("dataset.name")),
    Rule("dataset.count", lambda c: c.dataset.name == "gaussian2d", "dataset 'gaussian2d'",
         _is("dataset.name")),
    Rule("dataset.resize", lambda c: c.dataset.name != "gaussian2d", "image datasets",
         _is("dataset.name")),
    Rule("dataset.data_dir", lambda c: c.dataset.name != "gaussian2d" and not _user(c),
         "the named datasets read from files (npy:, npz: and folder: take a path)",
         _is("dataset.name")),
    Rule("dataset.download", lambda c: c.dataset.name in _DOWNLOADABLE,
         f"the datasets {list(_DOWNLOADABLE)}", _is("dataset.name")),
    Rule("dataset.verify_checksums", lambda c: c.dataset.name in _FILES,
         f"the datasets {list(_FILES)}", _is("dataset.name")),
    Rule("dataset.tfds_image_key", lambda c: str(c.dataset.name).startswith("tfds:"),
         "'tfds:*' datasets", _is("dataset.name")),
    Rule("dataset.key", lambda c: str(c.dataset.name).startswith("npz:"),
         "'npz:*' datasets", _is("dataset.name")),
    Rule("dataset.labels_key", lambda c: str(c.dataset.name).startswith("npz:"),
         "'npz:*' datasets", _is("dataset.name")),
    Rule("dataset.test", _user, "your own data (npy:, npz:, folder:)", _is("dataset.name")),
    Rule("dataset.validation_seed", _user, "your own data (npy:, npz:, folder:)",
         _is("dataset.name")),
    Rule("dataset.dev_seed", lambda c: int(c.dataset.dev_size) > 0,
         "a dev split (dataset.dev_size > 0)", _is("dataset.dev_size")),
    # evaluation and placement
    Rule("eval.dev_ll_samples", lambda c: int(c.dataset.dev_size) > 0,
         "a dev split (dataset.dev_size > 0)", _is("dataset.dev_size")),
    Rule("eval.dev_final_ll_samples", lambda c: int(c.dataset.dev_size) > 0,
         "a dev split (dataset.dev_size > 0)", _is("dataset.dev_size")),
    Rule("eval.ll_every", lambda c: int(c.eval.ll_samples) > 1,
         "an importance-sampled log-likelihood (eval.ll_samples > 1)", _is("eval.ll_samples")),
    Rule("shard_seeds", lambda c: int(c.num_seeds) > 1 or _sweep(c),
         "several seeds (num_seeds > 1) or a sweep", lambda c: "the run trains one model"),
)


def check_ignored(config: ml_collections.ConfigDict,
                  defaults: ml_collections.ConfigDict | None = None) -> None:
    """Raise ``ValueError`` for the first field of :data:`RULES` that ``config`` sets to
    something other than its default although the run does not use it.

    Args:
      config: the run config.
      defaults: the values that count as "not set" (default:
        :func:`jvae.runs.defaults.default_config`).
    """
    if defaults is None:
        from jvae.runs.defaults import default_config

        defaults = default_config()
    for rule in RULES:
        value = _get(config, rule.field)
        if _same(value, _get(defaults, rule.field)) or rule.applies(config):
            continue
        raise ValueError(
            f"config.{rule.field} = {value!r} would be ignored: it applies to {rule.when}, "
            f"and {rule.now(config)}; leave it at its default "
            f"({_get(defaults, rule.field)!r}) or change the run so that it applies.")


#: Groups whose keys are not declared by the defaults: ``ranges`` (an experiment's allowed
#: ranges, :func:`jvae.runs.schema.check_ranges`) and ``optim.param_groups`` (module regex:
#: learning rate).
OPEN_FIELDS = ("ranges", "optim.param_groups")
# The element type of tuple fields whose default is empty.
_ELEMENTS = {"sweep.beta": "number", "sweep.learning_rate": "number",
             "objective.control_variates": "str"}


def check_types(config: ml_collections.ConfigDict,
                defaults: ml_collections.ConfigDict | None = None) -> None:
    """Raise ``ValueError`` naming the first field of ``config`` whose type differs from its
    default's (integers for integer fields, numbers for number fields, ``True``/``False``
    for flags, text for names, tuples of the right elements), or that the defaults do not
    declare (with the closest declared name)."""
    if defaults is None:
        from jvae.runs.defaults import default_config

        defaults = default_config()
    _check_group(config, defaults, "")


def _check_group(config, defaults, prefix: str) -> None:
    if not isinstance(config, (ml_collections.ConfigDict, dict)):
        raise ValueError(f"config.{prefix[:-1]} must be a group of fields, got {config!r}.")
    for key in config.keys():
        path = f"{prefix}{key}"
        value = config[key]
        if path in OPEN_FIELDS:
            _check_open(path, value)
            continue
        if key not in defaults:
            import difflib

            close = difflib.get_close_matches(str(key), list(defaults.keys()), n=1)
            hint = f"; did you mean config.{prefix}{close[0]}?" if close else ""
            raise ValueError(f"config.{path} is not a config field{hint}")
        default = defaults[key]
        if isinstance(default, ml_collections.ConfigDict):
            _check_group(value, default, path + ".")
        else:
            _check_value(path, value, default)


def _kind(default) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "number"
    return "str" if isinstance(default, str) else "other"


_WORDS = {"bool": "True or False", "int": "an integer", "number": "a finite number",
          "str": "a text value"}


def _fits(value, kind: str) -> bool:
    import numbers

    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, numbers.Integral)
    if kind == "number":
        return isinstance(value, numbers.Real) and value == value and abs(value) != float("inf")
    if kind == "str":
        return isinstance(value, str)
    return True


def _check_value(path: str, value, default) -> None:
    if isinstance(default, (tuple, list)):
        if not isinstance(value, (tuple, list)):
            raise ValueError(f"config.{path} must be a tuple such as {tuple(default) or (1,)!r}, "
                             f"got {value!r}.")
        kind = _ELEMENTS.get(path) or (_kind(default[0]) if default else "other")
        if kind == "number" and default and all(_kind(d) == "int" for d in default):
            kind = "int"
        for i, item in enumerate(value):
            if not _fits(item, kind):
                raise ValueError(f"config.{path}[{i}] must be {_WORDS.get(kind, kind)}, got "
                                 f"{item!r}.")
        return
    kind = _kind(default)
    if not _fits(value, kind):
        raise ValueError(f"config.{path} must be {_WORDS.get(kind, kind)}, got {value!r}"
                         f" ({type(value).__name__}).")


def _check_open(path: str, value) -> None:
    if not isinstance(value, (ml_collections.ConfigDict, dict)):
        raise ValueError(f"config.{path} must be a group of fields, got {value!r}.")
    for key in value.keys():
        item = value[key]
        if path == "ranges":
            if not isinstance(item, (tuple, list)) or not all(_fits(b, "number") for b in item):
                raise ValueError(f"config.ranges.{key} must be (low, high) or (), got {item!r}.")
        elif not _fits(item, "number") or item <= 0:
            raise ValueError(f"config.{path}.{key} must be a positive learning rate, got "
                             f"{item!r}.")


def _get(config, path: str):
    node = config
    for part in path.split("."):
        node = node[part]
    return node


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return tuple(a) == tuple(b)
    return a == b
