"""Compiled against eager: every model's programs, as XLA compiles them, against op by op.

Usage::

    python -m tests.tools.compiled_eager [--all] [--only SUBSTRING] [--json OUT.json]

Each case is a prior, a posterior head, a likelihood, a network family and an objective;
``--all`` runs :data:`CASES`, where every prior meets every posterior head, each with three
programs; :data:`CI_CASES` (the default, what ``tests/test_compiled_eager.py`` runs) is five
of them, with the ``sample`` program (and one ``log_likelihood``), covering every prior,
posterior head, likelihood and network family. The model is built from a run config (:func:`jvae.build_model`,
:func:`jvae.build_loss`) with small networks, its parameters are the initial ones plus
``N(0, 0.2^2)`` noise (so flows and heads that start as the identity are not), and its
programs run twice, compiled (one ``jax.jit`` of them all) and op by op
(``jax.disable_jit()``):

- ``sample``: ``q(z|x)``'s ``sample_and_log_prob`` and the importance weight
  ``log p(x, z) - log q(z|x)`` (prior and decoder included) at ``[S, B]`` = the
  evaluator's chunk, ``[100, 500]`` (``[10, 500]`` with a VampPrior, as
  ``experiments/flows.py`` evaluates it);
- ``log_likelihood``: :func:`jvae.importance_log_likelihood` of each of the 500 examples
  (the evaluator's batch) from two chunks of that shape (another key);
- ``loss``: the training objective's value and its gradient at a batch of 100 (``[1,
  100]``, ``[4, 100]`` for IWAE).

The op-by-op run compiles each primitive for each shape it meets (most of the tool's time):
the programs share the evaluator's shapes so that those compilations are shared.

Run it in a process whose ``XLA_FLAGS`` are the defaults (the programs users run: the test
suite's optimisation level 0 is not; ``tests/test_compiled_eager.py`` starts it so). It
prints one line per program with the largest deviation in units of its tolerance, and
exits 1 if any output differs beyond tolerance or is finite on one side only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jvae

DATA_SHAPE = (8, 8, 1)
N_EVAL, BATCH = 500, 100
#: Deviation allowed between compiled and eager outputs: ``atol + rtol |eager|`` (fusion
#: reorders sums; the miscompilations this guards against move values by O(1)).
ATOL, RTOL = 2e-3, 2e-4
GRAD_RTOL = 1e-3          # gradients: |g_c - g_e| <= GRAD_RTOL |g_e| (whole vector)


class Case(NamedTuple):
    prior: str
    posterior: str
    likelihood: str
    network: str
    latent: int
    objective: str = "elbo"
    prior_components: int = 5
    #: The programs run (:data:`PROGRAMS`); :data:`CI_CASES` runs some in each case.
    programs: tuple[str, ...] = ("sample", "log_likelihood", "loss")

    @property
    def ll_chunk(self) -> int:
        """Samples per chunk of the evaluator (10 against a VampPrior's components)."""
        return 10 if self.prior == "vamp" else 100

    @property
    def name(self) -> str:
        return (f"{self.prior}-{self.posterior}-{self.likelihood}-{self.network}-"
                f"d{self.latent}-{self.objective}")


CASES = (
    Case("standard", "gaussian", "bernoulli", "mlp", 2),
    Case("standard", "mixture", "continuous_bernoulli", "mlp", 2, "mixture"),
    Case("standard", "planar", "bernoulli", "mlp", 2),
    Case("standard", "iaf", "gaussian", "mlp", 5),
    Case("standard", "coupling", "bernoulli", "conv", 2),
    Case("mixture", "gaussian", "gaussian", "conv", 2),
    Case("mixture", "mixture", "bernoulli", "mlp", 2, "mixture"),
    Case("mixture", "planar", "continuous_bernoulli", "mlp", 5, "iwae"),
    Case("mixture", "iaf", "bernoulli", "mlp", 2),
    Case("mixture", "coupling", "gaussian", "mlp", 2, "iwae"),
    # 500 pseudo-inputs (experiments/flows.py's): at [10, 500] samples the prior visits its
    # components in chunks.
    Case("vamp", "gaussian", "bernoulli", "mlp", 2, prior_components=500),
    Case("vamp", "mixture", "gaussian", "mlp", 2, "mixture"),
    Case("vamp", "planar", "bernoulli", "mlp", 2),
    Case("vamp", "iaf", "continuous_bernoulli", "mlp", 2),
    Case("vamp", "coupling", "bernoulli", "mlp", 2),
)
PROGRAMS = ("sample", "log_likelihood", "loss")
#: What ``tests/test_compiled_eager.py`` runs in CI. The op-by-op runs compile every primitive
#: for every shape they meet (seconds per program; the training loss with its gradient is the
#: dearest), so CI keeps to five cases, one per posterior head, that together cover every
#: prior, likelihood and network family: each one's ``sample`` program at the evaluator's
#: chunk shape (the planar posterior at the shapes the bug hit; the VampPrior with 500
#: pseudo-inputs, visited in chunks, and an IAF posterior, whose inverse it evaluates), and
#: the planar model's log-likelihood evaluation. ``--all`` runs every program of every case.
CI_CASES = (
    CASES[2]._replace(programs=("sample", "log_likelihood")),
    CASES[5]._replace(programs=("sample",)),
    CASES[6]._replace(programs=("sample",)),
    CASES[9]._replace(programs=("sample",)),
    CASES[13]._replace(prior_components=500, programs=("sample",)),
)


def program_shape(case: Case, program: str) -> list[int]:
    """``[samples, examples]`` of one program of ``case`` (``log_likelihood``: per chunk, two
    chunks)."""
    if program == "loss":
        return [4 if case.objective == "iwae" else 1, BATCH]
    return [case.ll_chunk, N_EVAL]


def case_config(case: Case):
    """A run config of ``case`` with small networks (16 units, conv widths 4 and 8)."""
    c = jvae.default_config()
    c.latent_dim = case.latent
    m = c.model
    m.prior, m.posterior, m.likelihood = case.prior, case.posterior, case.likelihood
    m.encoder = m.decoder = case.network
    m.encoder_hidden, m.decoder_hidden = (16,), (16,)
    m.conv_encoder_features, m.conv_encoder_out, m.conv_decoder_features = (4, 8), 16, (8, 4)
    # Only the fields that apply (a field the run would ignore is refused).
    if case.posterior in ("planar", "iaf", "coupling"):
        m.flow_layers = 2
    if case.posterior in ("iaf", "coupling"):
        m.flow_hidden = 8
    if case.posterior == "mixture":
        m.posterior_components = 2
    if case.prior in ("mixture", "vamp"):
        m.prior_components = case.prior_components
    c.objective.name, c.objective.num_samples = case.objective, 1
    if case.objective == "iwae":
        c.objective.num_samples, c.objective.estimator = 4, "iwae"
    jvae.validate_config(c)
    return c


def _data(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((N_EVAL,) + DATA_SHAPE, np.float32)


def _params(model, x):
    params = jvae.init_params(model, jax.random.key(0), x[:1])
    rng = np.random.default_rng(1)
    return jax.tree.map(lambda p: p + 0.2 * rng.standard_normal(p.shape).astype(p.dtype),
                        params)


def programs(case: Case):
    """``{name: (fn, args)}``: the programs of ``case`` (``case.programs``) as plain
    (unjitted) functions, all with the same arguments."""
    config = case_config(case)
    model = jvae.build_model(config, DATA_SHAPE)
    x = jnp.asarray(_data())
    params = _params(model, x)
    objective = jvae.as_objective(jvae.build_loss(config, model))
    estimator = objective.init(jax.random.key(2), x[:BATCH])

    def sample(params, key):
        q = model.apply(params, x, method=jvae.VAE.encode)
        z, log_q = q.sample_and_log_prob(seed=key, sample_shape=(case.ll_chunk,))
        return z, log_q, model.apply(params, x, z, method=jvae.VAE.log_joint) - log_q

    def log_likelihood(params, key):
        return jvae.importance_log_likelihood(model, params, jax.random.fold_in(key, 1), x,
                                              2 * case.ll_chunk, case.ll_chunk, validate=False)

    def loss(params, key):
        def value(p):
            return objective.loss(p, estimator, key, x[:BATCH])[0]
        return jax.value_and_grad(value)(params)

    key = jax.random.key(3)
    every = {"sample": sample, "log_likelihood": log_likelihood, "loss": loss}
    return {name: (every[name], (params, key)) for name in case.programs}


def deviation(compiled, eager) -> tuple[float, str]:
    """Largest deviation over the leaves, in units of the tolerance (> 1: a mismatch), and
    where. A leaf finite on one side only is a deviation of infinity."""
    worst, where = 0.0, ""
    for path, (c, e) in _leaves(compiled, eager):
        c, e = np.asarray(c, np.float64), np.asarray(e, np.float64)
        if np.any(np.isfinite(c) != np.isfinite(e)):
            return float("inf"), f"{path}: finite on one side only"
        ok = np.isfinite(e)
        if not np.any(ok):
            continue
        dev = float(np.max(np.abs(c[ok] - e[ok]) / (ATOL + RTOL * np.abs(e[ok]))))
        if dev > worst:
            worst, where = dev, path
    return worst, where


def grad_deviation(compiled, eager) -> float:
    """``|g_c - g_e| / (GRAD_RTOL |g_e|)`` over the whole gradient vector."""
    flat = [(np.asarray(c, np.float64).ravel(), np.asarray(e, np.float64).ravel())
            for _, (c, e) in _leaves(compiled, eager)]
    c = np.concatenate([f[0] for f in flat])
    e = np.concatenate([f[1] for f in flat])
    if not np.all(np.isfinite(c) == np.isfinite(e)):
        return float("inf")
    return float(np.linalg.norm(c - e) / (GRAD_RTOL * np.linalg.norm(e) + 1e-12))


def _leaves(a, b):
    paths = jax.tree_util.tree_flatten_with_path(a)[0]
    return [(jax.tree_util.keystr(p), (la, lb))
            for (p, la), lb in zip(paths, jax.tree.leaves(b))]


def check_case(case: Case) -> list[dict]:
    """Runs the programs of ``case`` compiled (one ``jit``) and eagerly; one record per
    program, with the CPU seconds of the whole case (compilation included)."""
    progs = programs(case)
    params, key = next(iter(progs.values()))[1]

    def everything(params, key):
        return {name: fn(params, key) for name, (fn, _) in progs.items()}

    start = time.process_time()
    compiled = jax.block_until_ready(jax.jit(everything)(params, key))
    mid = time.process_time()
    with jax.disable_jit():
        eager = jax.block_until_ready(everything(params, key))
    end = time.process_time()
    records = []
    for name in progs:
        if name == "loss":
            dev, where = deviation(compiled[name][0], eager[name][0])
            grad = grad_deviation(compiled[name][1], eager[name][1])
            dev, where = max((dev, where), (grad, "gradient"))
        else:
            dev, where = deviation(compiled[name], eager[name])
        records.append({"case": case.name, "program": name, "shape": program_shape(case, name),
                        "prior": case.prior, "posterior": case.posterior,
                        "likelihood": case.likelihood, "network": case.network,
                        "objective": case.objective, "deviation": dev, "where": where,
                        "compiled_cpu_seconds": mid - start, "eager_cpu_seconds": end - mid})
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every prior with every posterior")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--json", default="", help="write the records to this file")
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, "
          f"workaround: {jvae.xla_workarounds().state}", flush=True)
    records, start = [], time.perf_counter()
    for case in CASES if args.all else CI_CASES:
        if args.only not in case.name:
            continue
        for r in check_case(case):
            records.append(r)
            verdict = "ok" if r["deviation"] <= 1.0 else "MISMATCH"
            print(f"{verdict:8s} {r['case']:45s} {r['program']:14s} {r['shape']} deviation "
                  f"{r['deviation']:.3g} {r['where']} (case: CPU {r['compiled_cpu_seconds']:.1f}"
                  f" s compiled, {r['eager_cpu_seconds']:.1f} s eager)", flush=True)
    bad = [r for r in records if not r["deviation"] <= 1.0]
    print(f"{len(records)} programs, {len(bad)} mismatches, "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    return 1 if bad or not records else 0


if __name__ == "__main__":
    sys.exit(main())
