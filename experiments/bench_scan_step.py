"""Benchmark: a CNN training step inside ``lax.scan`` (where jvae trains) and called alone.

XLA compiles a program differently inside a ``while`` loop's body: buffer layouts are chosen
for the loop, and a convolution's gradient can take another, slower form there. A benchmark
of one jitted step (``experiments.bench_conv``) then says little about the training epoch.
This script measures both, in one run, round-robin over ``--rounds`` rounds (medians printed):

- ``last_layer``: the gradient (w.r.t. the kernel and the input) of ``sum(sin(y))`` for the
  DPM2 decoder's 1-channel output layer, ``ConvTranspose(1, 6x6, stride 2, VALID)`` on
  ``[256, 30, 30, 32]`` -> ``[256, 64, 64, 1]``, with ``impl="native"`` and
  ``impl="subpixel"``: ``scan`` runs 10 such gradients as one ``lax.scan`` (seconds per
  step), ``alone`` calls one jitted gradient 10 times;
- ``vae_cnn``: the DPM2 ``vae_cnn`` variant's training step (the notebook's CNN, dropout,
  Adam) on 2560 random 64x64 binary images, batch 256: ``scan`` is
  :func:`jvae.training.make_train_epoch`'s compiled epoch of 10 steps (seconds per step),
  ``alone`` one jitted step (gradient and Adam update) called 10 times.

    python -m experiments.bench_scan_step --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jvae
from jvae import ConvTranspose, TrainState, make_train_epoch

STEPS = 10


def _timed(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return (time.perf_counter() - start) / STEPS


def last_layer_programs(impl: str) -> dict:
    x = jax.random.normal(jax.random.key(0), (STEPS, 256, 30, 30, 32))
    layer = ConvTranspose(1, (6, 6), strides=(2, 2), padding="VALID", impl=impl)
    params = layer.init(jax.random.key(1), x[0])
    grad = jax.grad(lambda p, v: jnp.sum(jnp.sin(layer.apply(p, v))), argnums=(0, 1))

    def body(carry, v):
        gp, gv = grad(params, v)
        return carry, (jax.tree_util.tree_map(jnp.sum, gp), jnp.sum(gv))

    scanned = jax.jit(lambda xs: jax.lax.scan(body, 0.0, xs)[1]).lower(x).compile()
    alone = jax.jit(grad).lower(params, x[0]).compile()

    def run_alone():
        out = None
        for i in range(STEPS):
            out = alone(params, x[i])
        return out

    return {f"last_layer_{impl}_scan": lambda: scanned(x),
            f"last_layer_{impl}_alone": run_alone}


def vae_cnn_programs() -> dict:
    import dpm2  # experiments/dpm2.py: the notebook's variants

    config = dpm2.variant_config("vae_cnn", epochs=1)
    images = (np.random.default_rng(0).random((STEPS * 256, 64, 64, 1)) < 0.3).astype(np.float32)
    model = jvae.build_model(config, images.shape[1:])
    loss = jvae.build_loss(config, model)
    opt = jvae.build_optimizer(config)
    key = jax.random.key(0)
    state = TrainState.create(jvae.init_params(model, key, images[:1]), opt, key)
    data = jnp.asarray(images)
    epoch = make_train_epoch(loss, opt, 256, validate=False, step_metrics=True)
    scanned = epoch.lower(state, data, None).compile()

    def step(params, opt_state, k, x):
        grads = jax.grad(lambda q: loss(q, k, x)[0])(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    alone = jax.jit(step).lower(state.params, state.opt_state, key, data[:256]).compile()

    def run_alone():
        params, opt_state = state.params, state.opt_state
        for i in range(STEPS):
            params, opt_state = alone(params, opt_state, jax.random.fold_in(key, i),
                                      data[256 * i:256 * (i + 1)])
        return params

    return {"vae_cnn_scan": lambda: scanned(state, data, None), "vae_cnn_alone": run_alone}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    programs = {**last_layer_programs("native"), **last_layer_programs("subpixel"),
                **vae_cnn_programs()}
    names = list(programs)
    times = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(_timed(programs[name]))
    medians = {name: statistics.median(v) for name, v in times.items()}
    print(f"seconds per step, medians of {args.rounds} rounds ({jax.default_backend()})")
    for name in names:
        print(f"  {name:28s} {medians[name]:7.3f}   rounds: "
              + " ".join(f"{t:.3f}" for t in times[name]))
    for prefix in ("last_layer_native", "last_layer_subpixel", "vae_cnn"):
        print(f"  {prefix}: scan / alone = "
              f"{medians[prefix + '_scan'] / medians[prefix + '_alone']:.2f}")
    return medians


if __name__ == "__main__":
    main()
