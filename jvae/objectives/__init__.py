"""Objectives: each a factory returning a pure ``loss(params, key, x) -> (loss, aux)``."""

from jvae.objectives.elbo import make_elbo_loss

__all__ = ["make_elbo_loss"]
