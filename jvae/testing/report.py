"""One call that measures an estimator against the exact gradient and the reparameterised one.

    ref = jvae.testing.ppca_reference()
    obj = jvae.make_sfe_objective(ref.model, control_variates=(jvae.self_critic(),))
    report = jvae.testing.estimator_report(obj, model=ref, key=jax.random.key(0))

prints (and returns) the estimator's bias in standard errors against the exact ELBO
gradient of the PPCA reference (:func:`jvae.testing.exact_elbo_gradient`), the total
variance of its inference-network and of its whole gradient relative to the reparameterised
estimator (:func:`jvae.make_elbo_loss`, one sample) on the same point, the median SNR of the
inference-network gradient, and the seconds per 1000 draws (after compilation, this host).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from jvae.objectives.base import EstimatorState, Objective
from jvae.testing.checks import (SNRReport, UnbiasedReport, VarianceReport, check_unbiased, snr,
                                 variance_ratio)
from jvae.testing.draws import make_gradient_sampler, param_mask
from jvae.testing.references import PPCAReference, exact_elbo_gradient, ppca_reference
from jvae.data.arguments import check_count

__all__ = ["EstimatorReport", "estimator_report", "report_table"]

INFERENCE_MODULES = ("encoder", "posterior")


@dataclasses.dataclass(frozen=True, repr=False)
class EstimatorReport:
    """What :func:`estimator_report` measured.

    Attributes:
      name: the label given.
      num_draws: n, for the estimator and for the reparameterised baseline.
      bias: :class:`UnbiasedReport` against the reference gradient (``None`` when the
        reference was ``None``).
      variance: :class:`VarianceReport`, ``tr Cov`` of the inference-network gradient over
        the reparameterised estimator's.
      variance_all: the same over every parameter.
      snr: :class:`SNRReport` of the inference-network gradient.
      seconds_per_1000: wall-clock seconds per 1000 draws, compilation excluded.
      reference: what the bias was measured against (``"exact ELBO gradient"``, ...).
      draws: ``[n, P]`` the estimator's gradient draws (for further checks).
    """

    name: str
    num_draws: int
    bias: UnbiasedReport | None
    variance: VarianceReport
    variance_all: VarianceReport
    snr: SNRReport
    seconds_per_1000: float
    reference: str
    draws: np.ndarray = dataclasses.field(default=None, compare=False)

    @property
    def passed(self) -> bool:
        """Unbiased (when a reference was given)."""
        return self.bias is None or bool(self.bias)

    def __bool__(self) -> bool:
        return self.passed

    def assert_(self) -> "EstimatorReport":
        """``self`` if every check passed, else an ``AssertionError`` with the report."""
        if not self.passed:
            raise AssertionError(str(self))
        return self

    def as_dict(self) -> dict:
        """Plain numbers, for JSON."""
        b = self.bias
        return {"name": self.name, "num_draws": self.num_draws, "reference": self.reference,
                "bias_z": None if b is None else b.statistic,
                "unbiased": None if b is None else b.passed,
                "variance_ratio_inference": self.variance.statistic,
                "variance_ratio_inference_se": self.variance.standard_error,
                "variance_ratio_all": self.variance_all.statistic,
                "snr_inference": self.snr.statistic,
                "seconds_per_1000_draws": self.seconds_per_1000}

    def __str__(self) -> str:
        b = self.bias
        bias = ("  bias: n/a (no reference)" if b is None else
                f"  bias vs {self.reference}: max |bias|/se {b.statistic:.2f} (threshold "
                f"{b.z:g}) -> {'unbiased' if b.passed else 'BIASED'}")
        return "\n".join([
            f"estimator report: {self.name} (n = {self.num_draws} draws)",
            bias,
            f"  variance / reparameterised, inference network: {self.variance.statistic:.4g}"
            f" +- {self.variance.standard_error:.2g}",
            f"  variance / reparameterised, all parameters: {self.variance_all.statistic:.4g}"
            f" +- {self.variance_all.standard_error:.2g}",
            f"  SNR (median |mean|/std), inference network: {self.snr.statistic:.3g}",
            f"  seconds per 1000 draws: {self.seconds_per_1000:.3g}",
        ])

    def __repr__(self) -> str:
        return str(self)


def _timed_draws(objective, params, x, state, n, key, chunk_size):
    sample = make_gradient_sampler(objective, params, x, state=state,
                                   init_key=jax.random.fold_in(key, 1), chunk_size=chunk_size,
                                   num_draws=n)
    keys = jax.random.split(key, n)
    sample(keys[:sample.chunk_size])                     # compile (and run once)
    start = time.perf_counter()
    draws = sample(keys)
    return draws, time.perf_counter() - start


def estimator_report(objective: Callable | Objective, *, model: PPCAReference | None = None,
                     name: str = "estimator", n: int = 4000, key: jax.Array | None = None,
                     params: Any = None, x: jax.Array | None = None,
                     state: EstimatorState | None = None, reference: Any = "elbo",
                     reference_se: Any = 0.0, reference_name: str | None = None,
                     baseline: Any = None, z: float = 4.5,
                     max_relative_se: float = 0.5,
                     chunk_size: int | None = None, print_report: bool = True
                     ) -> EstimatorReport:
    """Bias, variance, SNR and cost of a gradient estimator on a reference model.

    Args:
      objective: a loss or an :class:`~jvae.objectives.Objective` built on ``model.model``.
      model: the :class:`PPCAReference` (default :func:`ppca_reference`'s 5-by-2 PPCA).
      name: a label for the printout.
      n: draws of the estimator and of the reparameterised baseline.
      key: typed key (default ``jax.random.key(0)``); the estimator's draws use it, the
        baseline's ``jax.random.fold_in(key, 2)``.
      params: the point (default ``model.params(1.0, 0.8)``: ``q`` one posterior sd off and
        20% too narrow, so the exact gradient is not zero).
      x: ``[B, D]`` observations (default: 3 drawn from the model with ``fold_in(key, 3)``).
      state: the estimator state, held fixed (default ``objective.init(fold_in(key, 1), x)``).
      reference: ``"elbo"`` (the exact ELBO gradient), a ``[P]`` array, another objective
        (its mean over ``n`` draws, with standard errors: e.g. the IWAE gradient for DReG),
        or ``None`` (no bias check).
      reference_se: standard error of an array reference.
      reference_name: what the reference is, for the printout (default: from its kind).
      baseline: ``[n', P]`` draws of the reparameterised estimator at the same point, to
        reuse across reports (default: ``n`` fresh draws of ``make_elbo_loss(model.model)``
        with ``jax.random.fold_in(key, 2)``).
      z: threshold of the bias check in standard errors (:func:`jvae.testing.check_unbiased`).
      max_relative_se: its informativeness threshold.
      chunk_size: as in :func:`jvae.testing.gradient_draws`.
      print_report: print the report.

    Returns:
      An :class:`EstimatorReport` (truthy when unbiased).
    """
    from jvae.objectives.elbo import make_elbo_loss

    ref = ppca_reference() if model is None else model
    if not isinstance(ref, PPCAReference):
        raise TypeError(f"model must be a PPCAReference (jvae.testing.ppca_reference()), got "
                        f"{type(ref).__name__}.")
    key = jax.random.key(0) if key is None else key
    n = check_count(n, "n", minimum=2)
    if isinstance(reference, str) and reference != "elbo":
        raise ValueError(f"Unknown reference {reference!r}; use 'elbo', an array, an "
                         "objective or None.")
    params = ref.params(1.0, 0.8) if params is None else params
    x = ref.sample(jax.random.fold_in(key, 3), 3) if x is None else x
    draws, seconds = _timed_draws(objective, params, x, state, n, key, chunk_size)
    if baseline is None:
        sample = make_gradient_sampler(make_elbo_loss(ref.model), params, x,
                                       chunk_size=chunk_size, num_draws=n)
        baseline = sample(jax.random.split(jax.random.fold_in(key, 2), n))
    label = "no reference" if reference is None else "given reference"
    if isinstance(reference, str):
        reference = np.asarray(exact_elbo_gradient(ref.model, params, x))
        label = "exact ELBO gradient"
    elif reference is not None and (callable(reference) or isinstance(reference, Objective)):
        other = make_gradient_sampler(reference, params, x, init_key=jax.random.fold_in(key, 5),
                                      chunk_size=chunk_size, num_draws=n)
        rd = other(jax.random.split(jax.random.fold_in(key, 4), n)).astype(np.float64)
        reference, reference_se = rd.mean(0), rd.std(0) / np.sqrt(n)
        label = f"reference estimator ({n} draws)"
    bias = None if reference is None else check_unbiased(
        draws, reference, reference_se=reference_se, z=z, max_relative_se=max_relative_se)
    inf = param_mask(params, *INFERENCE_MODULES)
    report = EstimatorReport(name, n, bias, variance_ratio(draws, baseline, mask=inf),
                             variance_ratio(draws, baseline), snr(draws, mask=inf),
                             1000.0 * seconds / n, str(reference_name or label), draws)
    if print_report:
        print(report)
    return report


def report_table(reports: Sequence[EstimatorReport]) -> str:
    """A markdown table of reports: bias in se, variance ratios, SNR, seconds per 1000 draws."""
    lines = ["| estimator | bias / se | unbiased | variance / reparam (inference) | "
             "variance / reparam (all) | SNR (inference) | s / 1000 draws |",
             "|---|---:|:---:|---:|---:|---:|---:|"]
    for r in reports:
        bias = "n/a" if r.bias is None else f"{r.bias.statistic:.2f}"
        ok = "n/a" if r.bias is None else ("yes" if r.bias.passed else "**no**")
        lines.append(f"| {r.name} | {bias} | {ok} | {_g(r.variance.statistic)} | "
                     f"{_g(r.variance_all.statistic)} | {r.snr.statistic:.3g} | "
                     f"{r.seconds_per_1000:.3g} |")
    return "\n".join(lines)


def _g(v: float) -> str:
    return f"{v:.3g}" if v < 1e4 else f"{v:.2e}"
