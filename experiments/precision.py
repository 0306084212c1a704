"""Experiment: what ``config.model.compute_dtype = "bfloat16"`` changes, against float32.

Two models on MNIST (grey levels, Bernoulli likelihood, Adam 1e-3, batch 128, latent 20): the
``pytorch_example`` MLP VAE (784-400-20, 20-400-784) and jvae's default conv model (the same
config with ``model.encoder = model.decoder = "conv"``). For each, a float32 and a bfloat16
copy start from the same parameters and train on the same batches (the same keys) for
``(rounds + 1) * steps`` steps on the first ``steps * 128`` training images, one epoch per
round; round 0 compiles and is not timed, and the rounds alternate float32 and bfloat16
(interleaved, so host load falls on both alike). Then, on the first ``--test`` test images (``--conv-test`` for the conv model):

* ``test_elbo``: the one-sample ELBO of each run's parameters, evaluated in float32 (what
  bfloat16 training did to the model);
* ``ll``: the importance-sampled ``log p(x)`` (K = ``--ll-samples``) of each run's parameters,
  evaluated in float32, and ``ll_bf16_eval``: the same parameters evaluated in bfloat16 (what
  bfloat16 evaluation changes, same keys);
* ``seconds_per_step``: median over the timed rounds; ``ll_seconds``: median of
  ``--rounds`` interleaved runs of the float32 and bfloat16 evaluations of the float32 run.

    python -m experiments.precision --json docs/data/precision.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import jvae
from experiments.bench_record import stamp
from experiments.configs import pytorch_example
from jvae.models.precision import with_compute_dtype

BATCH = 128


def config_for(arch: str):
    config = pytorch_example.get_config()
    if arch == "conv":
        config.model.encoder = config.model.decoder = "conv"
    jvae.validate_config(config)
    return config


def _median(values) -> float:
    return float(statistics.median(values))


def run_model(arch: str, train: np.ndarray, test: jnp.ndarray, args) -> dict:
    """Train float32 and bfloat16 copies interleaved; evaluate both in both precisions."""
    config = config_for(arch)
    model32 = jvae.build_model(config, train.shape[1:])
    models = {"float32": model32, "bfloat16": with_compute_dtype(model32, "bfloat16")}
    data = jnp.asarray(train[: args.steps * BATCH])
    params = jvae.init_params(model32, jax.random.key(config.seed), data[:1])
    optimizer = jvae.build_optimizer(config)
    epochs, states, times, losses = {}, {}, {n: [] for n in models}, {}
    for name, model in models.items():
        epochs[name] = jvae.make_train_epoch(jvae.build_loss(config, model), optimizer,
                                             BATCH, model=model)
        states[name] = jvae.TrainState.create(params, optimizer, jax.random.key(1))
    for r in range(args.rounds + 1):
        order = list(models) if r % 2 == 0 else list(models)[::-1]
        for name in order:
            start = time.perf_counter()
            states[name], metrics, step_losses = epochs[name](states[name], data)
            jax.block_until_ready(step_losses)
            if r > 0:
                times[name].append((time.perf_counter() - start) / args.steps)
            losses[name] = float(np.mean(np.asarray(step_losses)))
    # the conv model's chunk of K * batch decoded images must fit in memory: 50 x 20
    batch, chunk = (args.test, 100) if arch == "mlp" else (50, 20)
    evaluators = {n: jvae.make_evaluator(m, batch_size=min(batch, len(test)),
                                         ll_samples=args.ll_samples,
                                         ll_chunk=min(chunk, args.ll_samples))
                  for n, m in models.items()}
    key = jax.random.key(2)
    out = {"steps": (args.rounds + 1) * args.steps, "timed_rounds": args.rounds,
           "test_images": len(test),
           "steps_per_round": args.steps, "batch": BATCH}
    for name in models:
        trained = states[name].params
        in32 = evaluators["float32"](trained, key, test)
        in16 = evaluators["bfloat16"](trained, key, test)
        out[name] = {"train_loss_last_round": losses[name],
                     "test_elbo": float(in32["elbo"]), "ll": float(in32["log_likelihood"]),
                     "ll_bf16_eval": float(in16["log_likelihood"]),
                     "test_elbo_bf16_eval": float(in16["elbo"]),
                     "seconds_per_step": _median(times[name]),
                     "seconds_per_step_rounds": times[name]}
    ll_times = {n: [] for n in models}
    for r in range(args.rounds):
        for name in (list(models) if r % 2 == 0 else list(models)[::-1]):
            start = time.perf_counter()
            jax.block_until_ready(evaluators[name](states["float32"].params, key, test))
            ll_times[name].append(time.perf_counter() - start)
    for name in models:
        out[name]["ll_seconds"] = _median(ll_times[name])
        out[name]["ll_seconds_rounds"] = ll_times[name]
    f32, b16 = out["float32"], out["bfloat16"]
    out["differences"] = {
        "test_elbo_bf16_trained_minus_f32": b16["test_elbo"] - f32["test_elbo"],
        "ll_bf16_trained_minus_f32": b16["ll"] - f32["ll"],
        "ll_bf16_eval_minus_f32_eval": f32["ll_bf16_eval"] - f32["ll"],
        "step_time_ratio_bf16_over_f32": b16["seconds_per_step"] / f32["seconds_per_step"],
        "ll_time_ratio_bf16_over_f32": b16["ll_seconds"] / f32["ll_seconds"]}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="steps per round (one epoch)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (after one more)")
    parser.add_argument("--conv-steps", type=int, default=10, help="steps per round, conv model")
    parser.add_argument("--test", type=int, default=500, help="test images evaluated")
    parser.add_argument("--conv-test", type=int, default=100,
                        help="test images evaluated, conv model")
    parser.add_argument("--ll-samples", type=int, default=100, help="K of the IS estimate")
    parser.add_argument("--models", default="mlp,conv")
    parser.add_argument("--json", type=pathlib.Path, help="write the results here")
    args = parser.parse_args(argv)
    config = config_for("mlp")
    data = jvae.load_data(config)
    test = jnp.asarray(data.eval[: args.test])
    result = {"models": {}, "dataset": "mnist (grey, Bernoulli)",
              "ll_samples": args.ll_samples, "backend": jax.default_backend(),
              "device": str(jax.devices()[0].device_kind)}
    for arch in args.models.split(","):
        steps = args.steps if arch == "mlp" else args.conv_steps
        images = test if arch == "mlp" else test[: args.conv_test]
        result["models"][arch] = run_model(arch, data.train, images,
                                           argparse.Namespace(**{**vars(args), "steps": steps}))
        print(arch, json.dumps(result["models"][arch]["differences"]), flush=True)
    result = stamp(result, "experiments.precision", argv)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
