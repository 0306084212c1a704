"""The command lines behind ``python -m jvae.train``, ``jvae.evaluate`` and ``jvae.launch``:
argument parsing, one-line errors and exit statuses. The work itself is :mod:`jvae.runs`'."""
