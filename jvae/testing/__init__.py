"""Functional tests of gradient estimators, as a public API.

jvae checks its own estimators with these tools (``tests/test_estimators.py``); a new control
variate or IWAE-family estimator can be checked the same way:

* reference models with exact answers (:mod:`jvae.testing.references`): probabilistic PCA as
  a jvae ``VAE`` with exact ``log p(x)``, posterior, ELBO and ELBO gradient for any Gaussian
  ``q``; the same decoder with a mixture posterior and a low-variance reference gradient;
* :func:`gradient_draws`: ``[n, P]`` independent gradient draws, jitted, vmapped, chunked;
* :func:`gradient_moments`: their mean and variance without keeping them (:class:`Moments`
  per chunk, combined by :func:`combine_moments`), for many draws of a large network;
* checks returning reports that work as assertions: :func:`check_unbiased`,
  :func:`variance_ratio`, :func:`snr`, :func:`check_bound_ordering`;
* :func:`gradient_moments_at_points`: the same at many points in one program, and the SNR
  of a parameter group over them (:func:`group_snr`) with its log-log slope against K and a
  bootstrap interval (:func:`loglog_slope`), on Rainforth et al.'s (2018) Gaussian model with
  its closed-form optimum (:func:`gaussian_latent_reference`) or any VAE;
* :func:`estimator_report`: bias, variance, SNR and cost against the reparameterised
  estimator, in one call.

It is a subpackage (``from jvae import testing``), not flattened into ``jvae``.
"""

from jvae.testing.checks import (OrderingReport, SNRReport, UnbiasedReport, VarianceReport,
                                 check_bound_ordering, check_unbiased, snr, total_variance,
                                 variance_ratio)
from jvae.testing.draws import DEFAULT_CHUNK_BYTES, gradient_draws, make_gradient_sampler, param_mask
from jvae.testing.gaussian_latent import GaussianLatentReference, gaussian_latent_reference
from jvae.testing.moments import (Moments, combine_moments, gradient_moments,
                                  gradient_moments_at_points, moments_of)
from jvae.testing.references import (MixtureReference, PPCAReference, enumerated_mixture_gradient,
                                     exact_elbo, exact_elbo_gradient, gaussian_elbo,
                                     mixture_reference, ppca_reference)
from jvae.testing.report import EstimatorReport, estimator_report, report_table
from jvae.testing.scaling import GroupSNR, SlopeFit, group_snr, loglog_slope

__all__ = [
    "PPCAReference", "ppca_reference", "exact_elbo", "exact_elbo_gradient", "gaussian_elbo",
    "MixtureReference", "mixture_reference", "enumerated_mixture_gradient",
    "gradient_draws", "make_gradient_sampler", "param_mask", "DEFAULT_CHUNK_BYTES",
    "Moments", "moments_of", "combine_moments", "gradient_moments", "gradient_moments_at_points",
    "GaussianLatentReference", "gaussian_latent_reference", "GroupSNR", "SlopeFit", "group_snr",
    "loglog_slope",
    "UnbiasedReport", "VarianceReport", "SNRReport", "OrderingReport", "check_unbiased",
    "variance_ratio", "snr", "check_bound_ordering", "total_variance",
    "EstimatorReport", "estimator_report", "report_table",
]
