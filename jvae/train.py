"""``python -m jvae.train``: train a config into a work directory.

An entry point only; the command line lives in :mod:`jvae.cli.train`.
"""

import sys

from jvae.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
