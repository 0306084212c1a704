"""Rate-distortion curve of the MNIST VAE from one vmapped beta sweep (Alemi et al., 2018).

Trains the ``pytorch_example`` VAE for each beta of ``--betas`` as ONE jitted program (the
train states are stacked and the epoch is vmapped over beta, see ``config.sweep``), then
plots the test distortion D against the test rate R, with the lines ``D + R = -ELBO``.
Writes ``WORKDIR/rate_distortion.png`` and prints the table.

    JVAE_DATA_DIR=../shared/data python experiments/rate_distortion.py --workdir runs/rd
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from jvae.experiment import train_and_evaluate  # noqa: E402
from configs import pytorch_example  # noqa: E402

DEFAULT_BETAS = (0.1, 0.2, 0.4, 0.7, 1.0, 1.5, 2.5, 4.0)


def plot_rate_distortion(rates, distortions, betas, path) -> pathlib.Path:
    """D against R for each beta, with iso-ELBO lines; returns the PNG path."""
    fig = Figure(figsize=(6, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(rates, distortions, "o-")
    for r, d, b in zip(rates, distortions, betas):
        ax.annotate(f"beta={b:g}", (r, d), textcoords="offset points", xytext=(5, 5), fontsize=8)
    lo, hi = min(r + d for r, d in zip(rates, distortions)), max(rates) + max(distortions)
    grid = np.linspace(0, max(rates) * 1.1, 50)
    for total in np.linspace(lo, hi, 4):
        ax.plot(grid, total - grid, ":", color="grey", lw=0.8)
    ax.set_xlim(0, max(rates) * 1.1)
    ax.set_ylim(min(distortions) * 0.95, max(distortions) * 1.05)
    ax.set_xlabel("rate R = KL(q(z|x) || p(z))  [nats]")
    ax.set_ylabel("distortion D = -E_q log p(x|z)  [nats]")
    ax.set_title("MNIST VAE, one vmapped beta sweep (dotted: D + R constant)")
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=120)
    return path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--betas", type=float, nargs="+", default=list(DEFAULT_BETAS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit-train", type=int, default=0, help="0: all 60000 images")
    args = parser.parse_args(argv)
    config = pytorch_example.get_config()
    config.num_epochs = args.epochs
    config.sweep.beta = tuple(args.betas)
    config.dataset.limit_train = args.limit_train
    config.checkpoint_every = 0
    config.figures = False
    record = train_and_evaluate(config, args.workdir, progress=True)
    rates, dists = record["eval/rate"], record["eval/distortion"]
    path = plot_rate_distortion(rates, dists, args.betas,
                                pathlib.Path(args.workdir) / "rate_distortion.png")
    print(f"{'beta':>6} {'rate R':>8} {'distortion D':>13} {'-ELBO':>8}")
    for b, r, d in zip(args.betas, rates, dists):
        print(f"{b:6g} {r:8.2f} {d:13.2f} {r + d:8.2f}")
    print(f"train seconds per epoch (all {len(args.betas)} models): {record['train/seconds']:.2f}")
    print(f"wrote {path}")
    return record


if __name__ == "__main__":
    main()
