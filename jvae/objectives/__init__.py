"""Objectives: pure losses ``loss(params, key, x) -> (loss, aux)`` and stateful
:class:`Objective` pairs, with the control variates of score-function estimators."""

from jvae.objectives.autoencoder import make_autoencoder_loss, reconstruction_terms
from jvae.objectives.base import (EstimatorState, Objective, accepts_mask, accepts_step,
                                  as_objective,
                                  batch_mean, batch_std, score_surrogate, value_and_surrogate)
from jvae.objectives.control_variates import (CONTROL_VARIATES, ControlVariate, CVContext,
                                              RunningMean, RunningStd, centred_reward, chain,
                                              learned_baseline, leave_one_out,
                                              make_control_variate, scaled_reward, self_critic,
                                              vimco_baseline, vimco_leave_one_out_bound)
from jvae.objectives.elbo import elbo_terms, make_elbo_loss
from jvae.objectives.kl_schedule import (BETA_SCHEDULES, free_bits_rate, kl_warmup,
                                          per_dimension_kl)
from jvae.objectives.iwae import IWAE_ESTIMATORS, iwae_bound, make_iwae_loss, make_vimco_objective
from jvae.objectives.score_function import (make_mixture_objective, make_nvil_objective,
                                            make_sfe_objective)

__all__ = [
    "CONTROL_VARIATES", "CVContext", "ControlVariate", "EstimatorState", "IWAE_ESTIMATORS",
    "Objective", "RunningMean", "RunningStd", "as_objective", "centred_reward", "chain",
    "elbo_terms", "iwae_bound", "learned_baseline", "leave_one_out", "make_control_variate",
    "make_elbo_loss", "make_iwae_loss", "make_mixture_objective", "make_sfe_objective",
    "make_vimco_objective", "scaled_reward", "score_surrogate", "self_critic",
    "value_and_surrogate", "vimco_baseline", "vimco_leave_one_out_bound",
    "make_autoencoder_loss", "reconstruction_terms", "make_nvil_objective", "accepts_mask",
    "batch_mean", "batch_std", "accepts_step", "BETA_SCHEDULES", "kl_warmup", "free_bits_rate",
    "per_dimension_kl",
]
