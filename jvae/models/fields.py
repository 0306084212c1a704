"""One-line checks of the fields of jvae's Flax modules, when a module is constructed.

A Linen module is a dataclass whose fields are read only when it is first called, deep
inside ``init``: ``VampPrior(500)`` (the count given where the data shape goes) used to fail
there with "'int' object is not iterable", and a prior of 3 latent dimensions under a
posterior of 2 with a broadcasting error. The modules of :mod:`jvae.models` mix in
:class:`CheckedModule`, whose ``__post_init__`` runs :func:`check_fields` on every
construction (a few ``isinstance`` tests): the error names the class, the field, what it
must be and, for a plain number given where a shape goes, the shape meant and the fields'
order. A :class:`~jvae.models.vae.VAE` also checks that its parts fit together
(:func:`check_parts`): each part in its slot, the prior's and the posterior's latent sizes
equal, the likelihood's event shape (and a VampPrior's pseudo-input shape) equal to
``data_shape``; modules of the flow heads are checked there too.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

from jvae.models.precision import check_compute_dtype

__all__ = ["CheckedModule", "check_fields", "check_parts", "FIELDS"]

#: What each field of each module class must be (looked up along the class's MRO by name).
FIELDS: dict[str, dict[str, str]] = {
    "StandardNormalPrior": {"latent_dim": "count"},
    "MixturePrior": {"latent_dim": "count", "num_components": "count",
                     "init_spread": "positive", "min_scale": "non-negative"},
    "VampPrior": {"data_shape": "shape", "num_components": "count", "init_mean": "number",
                  "init_std": "non-negative", "clip": "interval"},
    "_LikelihoodHead": {"event_shape": "shape", "project": "bool", "dropout_rate": "rate"},
    "GaussianHead": {"fixed_scale": "positive", "min_scale": "non-negative"},
    "DiagGaussianHead": {"latent_dim": "count", "min_scale": "non-negative",
                         "dropout_rate": "rate"},
    "MixtureGaussianHead": {"latent_dim": "count", "num_components": "count",
                            "min_scale": "non-negative", "init_spread": "non-negative",
                            "dropout_rate": "rate"},
    "PointHead": {"latent_dim": "count"},
    "MLP": {"hidden": "widths", "in_event_ndims": "count", "activate_final": "bool",
            "dropout_rate": "rate"},
    "ConvEncoder": {"features": "layers", "out_dim": "count or None", "dropout_rate": "rate",
                    "activate_last": "bool"},
    "ConvDecoder": {"image_shape": "image", "out_channels": "count", "features": "widths",
                    "start_features": "count or None", "activate_start": "bool",
                    "dropout_rate": "rate"},
    "_FlowHead": {"latent_dim": "count", "num_layers": "count", "min_scale": "non-negative",
                  "dropout_rate": "rate"},
    "IAFHead": {"hidden": "layers"},
    "CouplingFlowHead": {"hidden": "count"},
    "MADE": {"latent_dim": "count", "hidden": "layers", "reverse": "bool"},
    "VAE": {"data_shape": "shape", "prior": "module", "encoder": "module",
            "posterior": "module", "decoder": "module", "likelihood": "module"},
}

_WORDS = {
    "count": "a positive integer", "count or None": "a positive integer or None",
    "shape": "a shape: a non-empty tuple of positive integers such as (28, 28, 1)",
    "image": "an image size (H, W) of two positive integers",
    "widths": "a tuple of positive integers (layer widths, e.g. (400,))",
    "layers": "a non-empty tuple of positive integers (layer widths, e.g. (100,))",
    "bool": "True or False", "number": "a finite number",
    "positive": "a finite number > 0", "non-negative": "a finite number >= 0",
    "rate": "a number in [0, 1)", "interval": "None or (low, high) with low < high",
    "module": "a Flax module",
}

# The slot each known module class belongs in (for VAE's parts).
_ROLES = {"StandardNormalPrior": "prior", "MixturePrior": "prior", "VampPrior": "prior",
          "DiagGaussianHead": "posterior", "MixtureGaussianHead": "posterior",
          "PointHead": "posterior", "PlanarFlowHead": "posterior", "IAFHead": "posterior",
          "CouplingFlowHead": "posterior", "BernoulliHead": "likelihood",
          "ContinuousBernoulliHead": "likelihood", "GaussianHead": "likelihood",
          "MLP": "network", "ConvEncoder": "encoder network", "ConvDecoder": "decoder network"}
_SLOTS = {"prior": ("prior",), "posterior": ("posterior",), "likelihood": ("likelihood",),
          "encoder": ("network", "encoder network"), "decoder": ("network", "decoder network")}


class CheckedModule:
    """Mixin of jvae's Linen modules: :func:`check_fields` on construction (and on every
    clone Flax makes; the checks are a few ``isinstance`` tests)."""

    def __post_init__(self):
        check_fields(self)
        super().__post_init__()


def check_fields(module: Any) -> None:
    """Raise a one-line ``ValueError`` for the first field of ``module`` that is not what
    :data:`FIELDS` says (a module of another class passes unchecked), or for a
    ``compute_dtype`` that is not a name of :data:`jvae.models.precision.COMPUTE_DTYPES`; a
    VAE also gets :func:`check_parts`."""
    rules: dict[str, str] = {}
    for cls in reversed(type(module).__mro__):
        rules.update(FIELDS.get(cls.__name__, {}))
    name = type(module).__name__
    for field, kind in rules.items():
        if hasattr(module, field) and not _fits(getattr(module, field), kind):
            raise ValueError(_message(module, name, field, kind))
    if hasattr(module, "compute_dtype"):
        check_compute_dtype(module.compute_dtype, f"{name}.compute_dtype")
    if name == "VAE":
        check_parts(module)


def check_parts(vae: Any) -> None:
    """A VAE's parts fit: each in its slot, latent sizes equal, event shapes the data's."""
    shape = tuple(int(s) for s in vae.data_shape)
    for slot, allowed in _SLOTS.items():
        part = getattr(vae, slot)
        role = _ROLES.get(type(part).__name__)
        if role is not None and role not in allowed:
            raise ValueError(
                f"VAE.{slot} is a {type(part).__name__} (a {role}), not a {allowed[0]}; the "
                "VAE's fields in order are data_shape, prior, encoder, posterior, decoder, "
                "likelihood.")
        check_fields(part)
    prior, posterior, likelihood = vae.prior, vae.posterior, vae.likelihood
    a, b = getattr(prior, "latent_dim", None), getattr(posterior, "latent_dim", None)
    if a is not None and b is not None and int(a) != int(b):
        raise ValueError(f"VAE: the prior ({type(prior).__name__}) has latent_dim {a} but the "
                         f"posterior ({type(posterior).__name__}) has latent_dim {b}; give "
                         "both the same latent size.")
    for part, field in ((likelihood, "event_shape"), (prior, "data_shape")):
        value = getattr(part, field, None)
        if value is not None and tuple(int(s) for s in value) != shape:
            raise ValueError(f"VAE: the {type(part).__name__}'s {field} "
                             f"{tuple(int(s) for s in value)} differs from the VAE's "
                             f"data_shape {shape}; they must be equal.")


# ----------------------------------------------------------------------------- private


def _int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _finite(v) -> bool:
    return (isinstance(v, numbers.Real) and not isinstance(v, bool)
            and math.isfinite(float(v)))


def _fits(value, kind: str) -> bool:
    if kind == "count":
        return _int(value) and value >= 1
    if kind == "count or None":
        return value is None or (_int(value) and value >= 1)
    if kind in ("shape", "image", "widths", "layers"):
        if not isinstance(value, (tuple, list)) or not all(_int(v) and v >= 1 for v in value):
            return False
        return {"shape": len(value) >= 1, "image": len(value) == 2,
                "layers": len(value) >= 1}.get(kind, True)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "number":
        return _finite(value)
    if kind == "positive":
        return _finite(value) and value > 0
    if kind == "non-negative":
        return _finite(value) and value >= 0
    if kind == "rate":
        return _finite(value) and 0 <= value < 1
    if kind == "interval":
        return value is None or (isinstance(value, (tuple, list)) and len(value) == 2
                                 and all(_finite(v) for v in value) and value[0] < value[1])
    if kind == "module":
        import flax.linen as nn

        return isinstance(value, nn.Module)
    return True


def _message(module, name: str, field: str, kind: str) -> str:
    value = getattr(module, field)
    text = f"{name}.{field} must be {_WORDS[kind]}, got {value!r}"
    if kind in ("shape", "image", "widths", "layers") and _int(value):
        order = [f.name for f in dataclasses.fields(module) if f.name not in ("parent", "name")]
        text += (f"; did you mean ({value},)? ({name}'s fields in order are "
                 f"{', '.join(order[:4])}{', ...' if len(order) > 4 else ''})")
    return text + "."
