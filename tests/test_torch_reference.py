"""The optional PyTorch reference (experiments/torch_reference.py): skipped without PyTorch."""

import numpy as np
import pytest

from experiments import torch_reference

pytest.importorskip("torch", reason="PyTorch is an optional extra (pip install 'jvae[torch]')")


def test_torch_reference_trains_and_reports_a_test_loss():
    rng = np.random.default_rng(0)
    images = (rng.random((256, 784)) < 0.2).astype(np.float32)
    result = torch_reference.time_torch_epochs(images, 4, batch_size=64, seed=1, num_threads=1,
                                               test_images=images[:100])
    assert len(result["epoch_seconds"]) == len(result["train_loss"]) == 4
    # Training lowers the loss, and the test loss of the trained model on (training) images
    # lies below the first epoch's mean training loss (near 784 log 2 at initialisation).
    assert result["train_loss"][-1] < result["train_loss"][0] < 784 * np.log(2) + 50
    assert np.isfinite(result["test_loss"]) and 0 < result["test_loss"] < result["train_loss"][0]
    with pytest.raises(ValueError, match="split"):
        torch_reference.load_mnist_train_images("unused", split="valid")
