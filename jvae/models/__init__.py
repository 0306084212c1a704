"""Models: Flax Linen modules that map inputs to ``distrax`` distributions.

The :class:`VAE` joins a prior, an encoder and posterior head, and a decoder and likelihood
head; each piece lives in the module named for it (``priors``, ``heads``, ``nets``, ``conv``,
``flows``, ``made``, ``autoencoder``, ``distributions``). Pure and jittable; imports only
``jvae.data``'s validation below it.
"""

from jvae.models.autoencoder import PointHead, is_autoencoder, make_autoencoder
from jvae.models.conv import Conv, ConvTranspose
from jvae.models.distributions import (Bernoulli, FlatIndependent, bernoulli, continuous_bernoulli,
                                       continuous_bernoulli_log_normalizer, diag_gaussian,
                                       gaussian, has_analytic_kl, is_reparameterised,
                                       kl_divergence,
                                       mixture_diag_gaussian, normal_kl, normal_nll,
                                       sample_mixture)
from jvae.models.flows import IAF, CouplingFlowHead, FlowPosterior, IAFHead, Planar, PlanarFlowHead
from jvae.models.heads import (BernoulliHead, ContinuousBernoulliHead, DiagGaussianHead,
                               GaussianHead, MixtureGaussianHead, positive_scale)
from jvae.models.made import MADE, MADEParams, made_apply, made_masks
from jvae.models.conv_nets import ConvDecoder, ConvEncoder, conv_preset
from jvae.models.nets import MLP
from jvae.models.priors import MixturePrior, StandardNormalPrior, VampPrior, vamp_mixture
from jvae.models.vae import (VAE, init_params, log_joint, naive_lower_bound, reconstruct,
                             sample_prior, training_apply)

__all__ = [
    "PointHead", "is_autoencoder", "make_autoencoder", "Conv", "ConvTranspose", "Bernoulli",
    "FlatIndependent", "bernoulli", "continuous_bernoulli", "continuous_bernoulli_log_normalizer",
    "diag_gaussian", "gaussian", "has_analytic_kl", "kl_divergence", "mixture_diag_gaussian",
    "normal_kl", "normal_nll",
    "sample_mixture", "IAF", "CouplingFlowHead", "FlowPosterior", "IAFHead", "Planar",
    "PlanarFlowHead", "BernoulliHead", "ContinuousBernoulliHead", "DiagGaussianHead",
    "GaussianHead", "MixtureGaussianHead", "positive_scale", "MADE", "MADEParams", "made_apply",
    "made_masks", "MLP", "ConvDecoder", "ConvEncoder", "conv_preset", "MixturePrior",
    "StandardNormalPrior", "VampPrior", "vamp_mixture", "VAE", "init_params", "log_joint",
    "naive_lower_bound", "reconstruct", "sample_prior", "training_apply", "is_reparameterised",
]
