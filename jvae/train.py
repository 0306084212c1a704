"""Command line: ``python -m jvae.train --config experiments/configs/NAME.py --workdir DIR``.

Any config field can be overridden, e.g. ``--config.num_epochs=2 --config.dataset.limit_train=1000``;
``--resume`` continues the run in DIR from its newest checkpoint.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jvae.experiment import train_and_evaluate
from jvae.training import NonFiniteLossError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to an ml_collections config file defining get_config().",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for metrics, checkpoints, figures.")
_RESUME = flags.DEFINE_bool("resume", False, "Continue the run in --workdir from its newest checkpoint.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar over epochs.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)   # orbax logs every checkpoint step at INFO
    try:
        config = _CONFIG.value          # loading a missing/broken config file raises here
    except Exception as e:  # noqa: BLE001 - any failure to load the file is a usage error
        print(f"error: could not load --config: {e}", file=sys.stderr)
        return 2
    try:
        record = train_and_evaluate(config, _WORKDIR.value, resume=_RESUME.value,
                                    progress=_PROGRESS.value)
    except (NonFiniteLossError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    summary = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in record.items())
    print(f"done: {summary}")
    return 0


if __name__ == "__main__":
    app.run(main)
