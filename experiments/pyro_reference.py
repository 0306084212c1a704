"""Pyro reference: the VAE of Pyro's "Variational Autoencoders" tutorial (Lab 5), trained with Pyro.

The model and training loop are the tutorial's (pyro.ai/examples/vae.html): Encoder fc1
784->400 softplus, ``z_loc = fc21(h)``, ``z_scale = exp(fc22(h))``; Decoder fc1 50->400
softplus, ``fc21`` 400->784 sigmoid; ``p(z) = N(0, I)`` in a ``pyro.plate``,
``pyro.sample("obs", dist.Bernoulli(loc_img, validate_args=False).to_event(1), obs=x)`` on
grey levels; ``SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), loss=Trace_ELBO())`` (or
``TraceMeanField_ELBO``, the analytic KL), batch 128. The train loss of an epoch is the sum of
``svi.step`` over its batches divided by the number of training images; the test loss is the
sum of ``svi.evaluate_loss`` over the test batches divided by the number of test images
(negative ELBO per example, one sample), as the tutorial prints them.

Only the data loading differs, for speed: the images are ONE float32 tensor in memory (read by
``jvae.data.load_dataset``, the arrays jvae trains on); each epoch draws a ``torch.randperm``
(seeded generator) and walks over the full batches and the last partial batch, as the
tutorial's ``DataLoader(shuffle=True)`` does, without worker processes.

Pyro is an optional extra (``pip install 'jvae[pyro]'``), never a dependency of jvae: torch
and pyro are imported inside functions only, so this module imports without them.

    python -m experiments.pyro_reference --epochs 10 --test-every 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

__all__ = ["pyro_available", "PyroVAERun", "pyro_to_jvae_params", "load_mnist_flat",
           "train_pyro"]

Z_DIM, HIDDEN = 50, 400


def pyro_available() -> bool:
    """Returns whether torch and Pyro can be imported."""
    try:
        import pyro  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _make_vae(z_dim: int = Z_DIM, hidden_dim: int = HIDDEN):
    """The tutorial's ``VAE`` module with ``model`` and ``guide`` (imports torch/pyro lazily)."""
    import pyro
    import pyro.distributions as dist
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, hidden_dim)
            self.fc21 = nn.Linear(hidden_dim, z_dim)
            self.fc22 = nn.Linear(hidden_dim, z_dim)
            self.softplus = nn.Softplus()

        def forward(self, x):
            x = x.reshape(-1, 784)
            hidden = self.softplus(self.fc1(x))
            z_loc = self.fc21(hidden)
            z_scale = torch.exp(self.fc22(hidden))
            return z_loc, z_scale

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(z_dim, hidden_dim)
            self.fc21 = nn.Linear(hidden_dim, 784)
            self.softplus = nn.Softplus()
            self.sigmoid = nn.Sigmoid()

        def forward(self, z):
            hidden = self.softplus(self.fc1(z))
            return self.sigmoid(self.fc21(hidden))

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Encoder()
            self.decoder = Decoder()
            self.z_dim = z_dim

        def model(self, x):
            pyro.module("decoder", self.decoder)
            with pyro.plate("data", x.shape[0]):
                z_loc = x.new_zeros(torch.Size((x.shape[0], self.z_dim)))
                z_scale = x.new_ones(torch.Size((x.shape[0], self.z_dim)))
                z = pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
                loc_img = self.decoder(z)
                pyro.sample("obs", dist.Bernoulli(loc_img, validate_args=False).to_event(1),
                            obs=x.reshape(-1, 784))

        def guide(self, x):
            pyro.module("encoder", self.encoder)
            with pyro.plate("data", x.shape[0]):
                z_loc, z_scale = self.encoder(x)
                pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))

    return VAE()


class PyroVAERun:
    """The tutorial's VAE and SVI, trained one epoch at a time (so a benchmark can interleave).

    Args:
      train_images: float32 ``[N, 784]`` (or ``[N, 28, 28, 1]``) grey levels in ``[0, 1]``.
      test_images: optional float32 ``[M, 784]`` test images for :meth:`test_loss`.
      batch_size: minibatch size; the last partial batch is used too.
      lr: Adam learning rate.
      seed: ``pyro.set_rng_seed`` (initialisation, the ELBO's samples) and the shuffling.
      kl: ``"mc"`` (``Trace_ELBO``, the tutorial) or ``"analytic"`` (``TraceMeanField_ELBO``).
      num_threads: ``torch.set_num_threads``; default ``os.cpu_count()``.
    """

    def __init__(self, train_images, test_images=None, *, batch_size: int = 128,
                 lr: float = 1e-3, seed: int = 0, kl: str = "mc", num_threads=None):
        import pyro
        import torch
        from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
        from pyro.optim import Adam

        if kl not in ("mc", "analytic"):
            raise ValueError(f"kl must be 'mc' (Trace_ELBO) or 'analytic' "
                             f"(TraceMeanField_ELBO), got {kl!r}")
        self.num_threads = int(num_threads or os.cpu_count() or 1)
        torch.set_num_threads(self.num_threads)
        self.train = _as_tensor(train_images, "train_images")
        self.test = None if test_images is None else _as_tensor(test_images, "test_images")
        self.batch_size = int(batch_size)
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.vae = _make_vae()
        loss = Trace_ELBO() if kl == "mc" else TraceMeanField_ELBO()
        self.svi = SVI(self.vae.model, self.vae.guide, Adam({"lr": lr}), loss=loss)
        self.versions = {"torch": torch.__version__, "pyro": pyro.__version__}

    def train_epoch(self) -> tuple[float, float]:
        """One pass over the training images; returns ``(seconds, train loss per example)``."""
        import torch

        start = time.perf_counter()
        n = self.train.shape[0]
        perm = torch.randperm(n, generator=self.generator)
        epoch_loss = 0.0
        for i in range(0, n, self.batch_size):
            epoch_loss += self.svi.step(self.train[perm[i:i + self.batch_size]])
        return time.perf_counter() - start, epoch_loss / n

    def test_loss(self) -> float:
        """Negative ELBO per test image (``svi.evaluate_loss``, one sample per image)."""
        if self.test is None:
            raise ValueError("PyroVAERun was built without test_images")
        total = 0.0
        for i in range(0, self.test.shape[0], self.batch_size):
            total += self.svi.evaluate_loss(self.test[i:i + self.batch_size])
        return total / self.test.shape[0]


def pyro_to_jvae_params(vae) -> dict:
    """The tutorial VAE's weights as the parameters of jvae's ``pyro_vae`` model
    (``nn.Linear`` weight ``[out, in]`` -> Flax kernel ``[in, out]``)."""
    def dense(layer):
        return {"kernel": layer.weight.detach().numpy().T.copy(),
                "bias": layer.bias.detach().numpy().copy()}

    e, d = vae.encoder, vae.decoder
    return {"params": {"encoder": {"dense_0": dense(e.fc1)},
                       "posterior": {"loc": dense(e.fc21), "raw_scale": dense(e.fc22)},
                       "decoder": {"dense_0": dense(d.fc1)},
                       "likelihood": {"out": dense(d.fc21)}}}


def train_pyro(train_images, test_images, num_epochs: int, *, test_every: int = 5,
               log=print, **kwargs) -> dict:
    """Trains the tutorial's VAE with Pyro for ``num_epochs``, testing every ``test_every``
    epochs and after the last; ``kwargs`` go to :class:`PyroVAERun`.

    Returns:
      dict with ``epoch_seconds`` and ``train_loss`` (per epoch), ``test_loss``
      (``{epoch: loss}``), ``num_threads`` and ``versions``.
    """
    run = PyroVAERun(train_images, test_images, **kwargs)
    out = {"epoch_seconds": [], "train_loss": [], "test_loss": {},
           "num_threads": run.num_threads, "versions": run.versions}
    for epoch in range(1, num_epochs + 1):
        seconds, loss = run.train_epoch()
        out["epoch_seconds"].append(seconds)
        out["train_loss"].append(loss)
        line = f"epoch {epoch}: {seconds:.2f} s, train loss {loss:.2f}"
        if epoch % test_every == 0 or epoch == num_epochs:
            out["test_loss"][epoch] = run.test_loss()
            line += f", test loss {out['test_loss'][epoch]:.2f}"
        log(line + " (nats per example)")
    return out


def load_mnist_flat(data_dir=None, split: str = "train_full") -> np.ndarray:
    """MNIST grey levels as float32 ``[N, 784]`` through ``jvae.data.load_dataset``
    (``train_full``: the 60000 training images; ``test``: the 10000 test images)."""
    from jvae.data import load_dataset

    images = load_dataset("mnist", split, data_dir=data_dir)
    return np.ascontiguousarray(np.asarray(images, np.float32).reshape(len(images), -1))


def _as_tensor(images, name: str):
    import torch

    arr = np.asarray(images, np.float32)
    arr = arr.reshape(len(arr), -1) if arr.ndim == 4 else arr
    if arr.ndim != 2 or arr.shape[1] != 784:
        raise ValueError(f"{name} must be [N, 784] or [N, 28, 28, 1], got shape "
                         f"{np.shape(images)}")
    return torch.from_numpy(np.array(arr, np.float32, order="C"))   # a writable copy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--test-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kl", choices=("mc", "analytic"), default="mc",
                        help="mc: Trace_ELBO (the tutorial); analytic: TraceMeanField_ELBO")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-threads", type=int, default=None, help="default: os.cpu_count()")
    parser.add_argument("--data-dir", default=None, help="default: $JVAE_DATA_DIR")
    args = parser.parse_args(argv)
    if args.epochs <= 0 or args.test_every <= 0:
        parser.error("--epochs and --test-every must be positive")
    if not pyro_available():
        print("skipped: Pyro is not installed (pip install 'jvae[pyro]')", file=sys.stderr)
        return None
    train, test = load_mnist_flat(args.data_dir), load_mnist_flat(args.data_dir, "test")
    result = train_pyro(train, test, args.epochs, test_every=args.test_every, seed=args.seed,
                        kl=args.kl, batch_size=args.batch_size, num_threads=args.num_threads)
    print(f"pyro {result['versions']['pyro']}, torch {result['versions']['torch']}, "
          f"{result['num_threads']} threads, {len(train)} train / {len(test)} test images")
    return result


if __name__ == "__main__":
    main()
