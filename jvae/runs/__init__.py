"""Runs: everything that touches files and processes around the pure core.

A run is a config (defaults, schema, overrides from the command line or a JSON file) built
into data, a model, a loss and an optimiser, trained epoch by epoch in a locked work
directory with metrics, step logs, checkpoints and figures, and resumable exactly. Also the
multi-process job setup. The layers below (:mod:`jvae.data` up to :mod:`jvae.evaluation`)
never import this one.
"""

from jvae.runs.builders import (Datasets, build_loss, build_model, build_optimizer, iwae_epochs,
                                load_data, split_dev)
from jvae.runs.checkpoints import (CheckpointError, Checkpointer, CheckpointSkippedWarning,
                                   write_json_atomic)
from jvae.runs.defaults import default_config, split_variant
from jvae.runs.cluster import detect_cluster, join_job
from jvae.runs.distributed import initialize_from_env
from jvae.runs.figures import (read_latent_snapshots, write_figures, write_latent_snapshot,
                               write_snapshots)
from jvae.runs.lock import WorkdirLock, WorkdirLockedError
from jvae.runs.loop import train_and_evaluate
from jvae.runs.overrides import (ConfigError, apply_override, config_from_json, load_config_file,
                                 normalised, resume_differences)
from jvae.runs.records import read_metrics
from jvae.runs.restore import RestoredRun, load_run, restore_run
from jvae.runs.schema import check_ranges, sweep_values, validate_config
from jvae.runs.steplog import DEV_FILE, STEPS_FILE, DevAssessor, read_jsonl

__all__ = [
    "Datasets", "build_loss", "build_model", "build_optimizer", "load_data", "split_dev",
    "sweep_values", "CheckpointError", "Checkpointer", "CheckpointSkippedWarning",
    "write_json_atomic", "default_config", "initialize_from_env", "join_job",
    "detect_cluster", "write_figures",
    "write_snapshots", "WorkdirLock", "WorkdirLockedError", "train_and_evaluate", "ConfigError",
    "apply_override", "config_from_json", "load_config_file", "normalised", "resume_differences",
    "read_metrics", "restore_run", "load_run", "RestoredRun", "check_ranges", "validate_config",
    "read_jsonl", "DEV_FILE", "STEPS_FILE", "DevAssessor", "iwae_epochs", "split_variant",
    "write_latent_snapshot", "read_latent_snapshots",
]
