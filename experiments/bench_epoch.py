"""Benchmark: one training epoch of the ``pytorch_example`` VAE, jvae against PyTorch.

Both train the PyTorch-examples MNIST VAE (784-400-20-400-784, Bernoulli/BCE on grey levels,
analytic KL, Adam 1e-3, batch 128) on the same 60000 training images held in memory, in the
same process, one after the other. jvae runs its jitted ``lax.scan`` epoch (compiled ahead of
time; compilation is reported apart); PyTorch runs ``experiments/torch_reference.py`` when
torch is importable (``pip install -e ".[torch]"``). Reported: the median wall time of epochs
2..N of each, and the ratio jvae / PyTorch.

    JVAE_DATA_DIR=../shared/data python experiments/bench_epoch.py --epochs 6
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from jvae import builders  # noqa: E402
from jvae.model import init_params  # noqa: E402
from jvae.training import TrainState, make_train_epoch  # noqa: E402
from configs import pytorch_example  # noqa: E402
import torch_reference  # noqa: E402


def time_jvae_epochs(images: np.ndarray, num_epochs: int, seed: int = 1) -> dict:
    """Time ``num_epochs`` jitted epochs of the pytorch_example model on ``images [N,28,28,1]``."""
    config = pytorch_example.get_config()
    config.seed = seed
    model = builders.build_model(config, images.shape[1:])
    optimizer = builders.build_optimizer(config)
    loss_fn = builders.build_loss(config, model)
    init_key, train_key = jax.random.split(jax.random.key(seed))
    state = TrainState.create(init_params(model, init_key, images[:1]), optimizer, train_key)
    data = jax.device_put(images)
    epoch = make_train_epoch(loss_fn, optimizer, int(config.batch_size))
    t0 = time.perf_counter()
    compiled = epoch.lower(state, data).compile()
    compile_seconds = time.perf_counter() - t0
    seconds, losses = [], []
    for _ in range(num_epochs):
        t0 = time.perf_counter()
        state, metrics, _ = compiled(state, data)
        jax.block_until_ready(state)
        seconds.append(time.perf_counter() - t0)
        losses.append(float(metrics["loss"]))
    return {"epoch_seconds": seconds, "train_loss": losses, "compile_seconds": compile_seconds,
            "steps_per_epoch": len(images) // int(config.batch_size)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs per framework (>= 2)")
    parser.add_argument("--data-dir", default=None, help="default: $JVAE_DATA_DIR")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch side")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the median is over epochs 2..N)")

    from jvae.data import load_dataset
    images = load_dataset("mnist", "train_full", data_dir=args.data_dir)
    images = np.ascontiguousarray(images, np.float32)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"jax {jax.__version__} on {jax.devices()[0].platform}; {len(images)} images")

    result = {"jvae": time_jvae_epochs(images, args.epochs)}
    jv = result["jvae"]
    jv["median_seconds"] = statistics.median(jv["epoch_seconds"][1:])
    print(f"jvae   : compile {jv['compile_seconds']:.2f} s; epochs "
          + ", ".join(f"{s:.2f}" for s in jv["epoch_seconds"])
          + f" s; median(2..N) {jv['median_seconds']:.3f} s; loss "
          + ", ".join(f"{v:.1f}" for v in jv["train_loss"]))

    if not args.no_torch and torch_reference.torch_available():
        th = torch_reference.time_torch_epochs(images.reshape(len(images), -1), args.epochs)
        th["median_seconds"] = statistics.median(th["epoch_seconds"][1:])
        result["torch"] = th
        print(f"pytorch: {th['torch_version']}, {th['num_threads']} threads; epochs "
              + ", ".join(f"{s:.2f}" for s in th["epoch_seconds"])
              + f" s; median(2..N) {th['median_seconds']:.3f} s; loss "
              + ", ".join(f"{v:.1f}" for v in th["train_loss"]))
        result["ratio"] = jv["median_seconds"] / th["median_seconds"]
        print(f"ratio jvae/pytorch (median epoch): {result['ratio']:.3f}")
    else:
        print("pytorch: not importable (pip install -e '.[torch]'); ratio not measured")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
