"""Rate-distortion curve of the MNIST VAE from one vmapped beta sweep (Alemi et al., 2018).

Trains the ``pytorch_example`` VAE for each beta of ``--betas`` as ONE jitted program (the
train states are stacked and the epoch is vmapped over beta, see ``config.sweep``), then
plots the test distortion D against the test rate R, with the lines ``D + R = -ELBO``.
Writes ``WORKDIR/rate_distortion.png`` and prints the table.

    JVAE_DATA_DIR=../shared/data python -m experiments.rate_distortion --workdir runs/rd
"""

from __future__ import annotations

import argparse
import pathlib

from experiments.configs import pytorch_example
from jvae import plotting, train_and_evaluate

DEFAULT_BETAS = (0.1, 0.2, 0.4, 0.7, 1.0, 1.5, 2.5, 4.0)
TITLE = "MNIST VAE, one vmapped beta sweep (dotted: D + R constant)"


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
    path = plotting.save_rate_distortion(rates, dists, args.betas,
                                         pathlib.Path(args.workdir) / "rate_distortion.png",
                                         title=TITLE)
    print(f"{'beta':>6} {'rate R':>8} {'distortion D':>13} {'-ELBO':>8}")
    for b, r, d in zip(args.betas, rates, dists):
        print(f"{b:6g} {r:8.2f} {d:13.2f} {r + d:8.2f}")
    print(f"train seconds per epoch (all {len(args.betas)} models): {record['train/seconds']:.2f}")
    print(f"wrote {path}")
    return record


if __name__ == "__main__":
    main()
