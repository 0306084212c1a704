"""PyTorch reference for the speed benchmark: the PyTorch-examples MNIST VAE, trained on the CPU.

The model and loss are those of the PyTorch example (``pytorch/examples`` ``vae/main.py``, Lab 5):
fc1 784->400 ReLU, fc21/fc22 400->20 (mu, logvar), z = mu + exp(0.5 logvar) * eps,
fc3 20->400 ReLU, fc4 400->784 sigmoid; loss = BCE(recon, x, reduction='sum') + KLD with
KLD = -0.5 * sum(1 + logvar - mu^2 - exp(logvar)) (Kingma & Welling 2014, appendix B); Adam 1e-3.

The training loop is the fastest idiomatic PyTorch for it that stays faithful to the example:
the whole training set is ONE float32 tensor in memory (no DataLoader, no worker processes);
each epoch draws a ``torch.randperm`` (seeded generator) and walks over the full batches plus
the last partial batch, as the example's DataLoader(shuffle=True, drop_last=False) does.

torch is an optional dependency (``pip install jvae[torch]``): it is imported inside functions
only, so this module imports without it.

Usage::

    python -m experiments.torch_reference --epochs 3 --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import gzip
import os
import time
from pathlib import Path

import numpy as np

__all__ = ["torch_available", "time_torch_epochs", "load_mnist_train_images"]


def torch_available() -> bool:
    """Returns whether PyTorch can be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _make_model():
    """Builds the PyTorch-examples VAE (imports torch lazily)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 400)
            self.fc21 = nn.Linear(400, 20)
            self.fc22 = nn.Linear(400, 20)
            self.fc3 = nn.Linear(20, 400)
            self.fc4 = nn.Linear(400, 784)

        def encode(self, x):
            h1 = F.relu(self.fc1(x))
            return self.fc21(h1), self.fc22(h1)

        def reparameterize(self, mu, logvar):
            std = torch.exp(0.5 * logvar)
            eps = torch.randn_like(std)
            return mu + eps * std

        def decode_logits(self, z):
            # The example returns torch.sigmoid(self.fc4(h3)); we keep the pre-activation and
            # fold the sigmoid into the loss (see ``loss_function``).
            h3 = F.relu(self.fc3(z))
            return self.fc4(h3)

        def forward(self, x):
            mu, logvar = self.encode(x)
            z = self.reparameterize(mu, logvar)
            return self.decode_logits(z), mu, logvar

    return VAE()


def _loss_function(logits, x, mu, logvar):
    """Negative ELBO summed over the batch, as the example's ``loss_function``.

    ``F.binary_cross_entropy_with_logits(fc4(h), x, reduction='sum')`` equals the example's
    ``F.binary_cross_entropy(sigmoid(fc4(h)), x, reduction='sum')`` mathematically (same loss,
    same gradients); it is one fused kernel and numerically stabler (no log(0) clamp at -100).
    """
    from torch.nn import functional as F

    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kld = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum()
    return bce + kld


def time_torch_epochs(images, num_epochs, batch_size=128, lr=1e-3, seed=1, num_threads=None,
                      test_images=None) -> dict:
    """Trains the PyTorch-examples VAE on the CPU and times each epoch.

    Args:
      images: float32 ``[N, 784]`` grey levels in ``[0, 1]`` (targets of the Bernoulli/BCE loss).
      num_epochs: number of passes over ``images``.
      batch_size: minibatch size; the last partial batch is used too (``drop_last=False``).
      lr: Adam learning rate.
      seed: seeds ``torch.manual_seed`` (initialisation, reparameterisation noise) and the
        shuffling generator.
      num_threads: intra-op threads for ``torch.set_num_threads``; default ``os.cpu_count()``.
      test_images: optional float32 ``[M, 784]``: after training, the example's test loss on
        them (negative ELBO per example with one sample, summed then divided by ``M``).

    Returns:
      dict with ``epoch_seconds`` (wall-clock seconds per epoch, shuffling included),
      ``train_loss`` (mean negative ELBO per example per epoch, in nats, as the example prints),
      ``num_threads`` (int), ``torch_version`` (str) and, with ``test_images``, ``test_loss``.
    """
    import torch

    images = np.asarray(images)
    if images.ndim != 2 or images.shape[1] != 784:
        raise ValueError(f"images must be [N, 784], got shape {images.shape}")
    if num_threads is None:
        num_threads = os.cpu_count() or 1
    num_threads = int(num_threads)
    torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)

    data = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    n = data.shape[0]
    model = _make_model()
    # foreach Adam is the default on CPU; the fused CPU kernel is a little faster where available.
    try:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()

    epoch_seconds, train_loss = [], []
    for _ in range(num_epochs):
        start = time.perf_counter()
        perm = torch.randperm(n, generator=generator)
        total = torch.zeros((), dtype=torch.float64)
        for i in range(0, n, batch_size):
            x = data[perm[i : i + batch_size]]
            optimizer.zero_grad(set_to_none=True)
            logits, mu, logvar = model(x)
            loss = _loss_function(logits, x, mu, logvar)
            loss.backward()
            optimizer.step()
            total += loss.detach()  # no .item() sync per step; read once per epoch
        total = total.item()
        epoch_seconds.append(time.perf_counter() - start)
        train_loss.append(total / n)
    result = {
        "epoch_seconds": epoch_seconds,
        "train_loss": train_loss,
        "num_threads": num_threads,
        "torch_version": torch.__version__,
    }
    if test_images is not None:
        test = torch.from_numpy(np.ascontiguousarray(test_images, dtype=np.float32))
        model.eval()
        with torch.no_grad():
            total = 0.0
            for i in range(0, test.shape[0], batch_size):
                x = test[i : i + batch_size]
                logits, mu, logvar = model(x)
                total += _loss_function(logits, x, mu, logvar).item()
        result["test_loss"] = total / test.shape[0]
    return result


def load_mnist_train_images(data_dir, split: str = "train") -> np.ndarray:
    """Reads MNIST images as float32 ``[N, 784]`` grey levels in ``[0, 1]``.

    Args:
      data_dir: directory holding ``mnist/{split}-images-idx3-ubyte.gz``.
      split: ``"train"`` (60000 images) or ``"t10k"`` (the 10000 test images).
    """
    if split not in ("train", "t10k"):
        raise ValueError(f"split must be 'train' or 't10k', got {split!r}")
    path = Path(data_dir) / "mnist" / f"{split}-images-idx3-ubyte.gz"
    with gzip.open(path, "rb") as f:
        raw = f.read()
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255.0


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", default=os.environ.get("JVAE_DATA_DIR"), help="default: $JVAE_DATA_DIR")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--num-threads", type=int, default=None, help="default: os.cpu_count()")
    parser.add_argument("--test", action="store_true",
                        help="after training, print the example's test loss (one sample)")
    args = parser.parse_args(argv)
    if args.data_dir is None:
        parser.error("give --data-dir or set JVAE_DATA_DIR")
    if not torch_available():
        parser.error("PyTorch is not installed (pip install 'jvae[torch]')")
    images = load_mnist_train_images(args.data_dir)
    test = load_mnist_train_images(args.data_dir, split="t10k") if args.test else None
    result = time_torch_epochs(
        images, args.epochs, batch_size=args.batch_size, seed=args.seed, num_threads=args.num_threads,
        test_images=test,
    )
    print(f"torch {result['torch_version']}, {result['num_threads']} threads, {len(images)} images")
    for epoch, (sec, loss) in enumerate(zip(result["epoch_seconds"], result["train_loss"]), start=1):
        print(f"epoch {epoch}: {sec:.2f} s, train loss {loss:.2f} nats/example")
    if "test_loss" in result:
        print(f"test loss {result['test_loss']:.2f} nats/example ({len(test)} test images, one sample)")
    return result


if __name__ == "__main__":
    main()
