"""``python -m jvae.launch``: start a multi-process training job on one machine.

An entry point only; the command line lives in :mod:`jvae.cli.launch`.
"""

import sys

from jvae.cli.launch import main

if __name__ == "__main__":
    sys.exit(main())
