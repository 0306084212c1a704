"""Training: the train state, optimisers, the scanned epoch, sharding over devices and
processes, and the guards that stop a run whose loss goes wrong.

Pure and jittable: nothing here writes files (checkpoints and logs are :mod:`jvae.runs`').
"""

from jvae.training.epoch import EpochPlan, make_train_epoch, steps_per_epoch
from jvae.training.guards import (DivergenceError, NonFiniteLossError, first_divergent_step,
                                  first_non_finite)
from jvae.training.optimizers import make_optimizer, set_learning_rate
from jvae.training.state import TrainState, trainable

__all__ = ["EpochPlan", "make_train_epoch", "steps_per_epoch", "DivergenceError", "NonFiniteLossError",
           "first_divergent_step", "first_non_finite", "make_optimizer", "set_learning_rate",
           "TrainState", "trainable"]
