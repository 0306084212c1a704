"""``python -m jvae.evaluate``: evaluate a run's newest checkpoint (importance-sampled log-likelihood).

An entry point only; the command line lives in :mod:`jvae.cli.evaluate`.
"""

import sys

from jvae.cli.evaluate import run

if __name__ == "__main__":
    sys.exit(run())
