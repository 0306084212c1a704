"""TensorFlow Datasets as a source (``dataset.name = "tfds:<name>"``), read with
``tfds.data_source`` under ``tfds.testing.mock_data`` (random examples of the real features;
neither TensorFlow nor any download is needed)."""

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from jvae.runs import builders  # noqa: E402

from jvae.runs import schema
from jvae import data as jdata  # noqa: E402
from jvae.runs.defaults import default_config  # noqa: E402


@pytest.fixture
def mock():
    with tfds.testing.mock_data(num_examples=12):
        yield


def test_cifar10_images_and_labels_equal_the_data_source(mock):
    split = jdata.load_split("tfds:cifar10", "train")
    source = tfds.data_source("cifar10", split="train")
    want = np.stack([source[i]["image"] for i in range(12)]).astype(np.float32) / 255
    np.testing.assert_array_equal(split.images, want)
    np.testing.assert_array_equal(split.labels, [int(source[i]["label"]) for i in range(12)])
    assert split.images.shape == (12, 32, 32, 3) and split.images.dtype == np.float32
    assert split.labels.dtype == np.int32 and not split.images.flags.writeable
    assert 0.0 <= split.images.min() and split.images.max() <= 1.0
    x = jdata.load_dataset("tfds:cifar10", "test", limit=5, resize=16)
    assert x.shape == (5, 16, 16, 3)


def test_any_image_dataset_by_name(mock):
    faces = jdata.load_split("tfds:celeb_a", "train", limit=2)    # 218x178, no label feature
    assert faces.images.shape == (2, 218, 178, 3) and faces.labels is None


def test_bad_names_and_features(mock):
    with pytest.raises(ValueError, match="unknown TFDS dataset 'cifar1O'.*did you mean 'tfds:cifar10'"):
        jdata.load_split("tfds:cifar1O", "train")
    with pytest.raises(ValueError, match=r"no image feature 'picture'; its features are \['id', "
                                         r"'image', 'label'\]"):
        jdata.load_split("tfds:cifar10", "train", tfds_image_key="picture")


def test_config_path_centred_for_a_gaussian(mock):
    c = default_config()
    c.dataset.name = "tfds:cifar10"
    c.dataset.train_split, c.dataset.eval_split = "train", "test"
    c.dataset.centre = True
    c.model.likelihood = "gaussian"
    schema.validate_config(c)
    d = builders.load_data(c)
    raw = jdata.load_split("tfds:cifar10", "test").images
    np.testing.assert_allclose(d.eval, raw * 2 - 1, atol=1e-7)
    assert d.train.shape == (12, 32, 32, 3) and d.eval_labels.shape == (12,)
    c.dataset.name = "tfds:"
    with pytest.raises(ValueError, match="names no dataset"):
        schema.validate_config(c)
