"""Datasets: loading verified files, binarisation, resizing, synthetic 2-D data, validation.

Images are float32 arrays ``[N, H, W, C]`` with values in ``[0, 1]`` (NHWC, as Flax
convolutions expect): ``C = 1`` grey levels for the MNIST family, ``C = 3`` RGB for CIFAR-10.
Files are found through the ``data_dir`` argument or the ``JVAE_DATA_DIR`` environment
variable, laid out as::

    <dir>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz           (IDX, gzip)
    <dir>/fashion_mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz   (IDX, gzip)
    <dir>/binarized_mnist/binarized_mnist_{train,valid,test}.npz          (packed bits)
    <dir>/cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch}        (official pickles)
        or <dir>/cifar10/cifar-10-python.tar.gz                           (their archive)
        or <dir>/cifar10/cifar10.pkl                                      (Homework 2's file)

MNIST, Fashion-MNIST and CIFAR-10 can also be fetched into a cache with :func:`download`
(``jvae/data/fetch.py``); the fixed binarised MNIST of Larochelle & Murray (2011) must be
placed by hand. Any prepared TensorFlow Datasets image dataset is read by name,
``"tfds:cifar10"``, ``"tfds:celeb_a"`` (``jvae/data/tfds_source.py``; no TensorFlow needed).

Every local file is checked against its pinned SHA-256 on first use (``verify=True``, see
``jvae/data/checksums.py``); the readers live in ``idx.py`` and ``npz.py``, and the checks
that every entry point applies to data arrays (:func:`check_data`) in ``validate.py``;
CIFAR-10's readers, with its published MD5s, in ``cifar.py``.

Your own data (``jvae/data/user.py``, folders of images in ``folder.py``): an array, an
``.npy`` or ``.npz`` file or a folder of PNG/JPEG images, as a source object
(:class:`ArraySource`, :class:`NpySource`, :class:`NpzSource`, :class:`FolderSource`) or by
name, ``"npy:PATH"``, ``"npz:PATH"``, ``"folder:PATH"``; uint8 pixels are scaled to
``[0, 1]`` as MNIST's are.
"""

from jvae.data.arguments import check_count, check_number
from jvae.data.checksums import ChecksumError
from jvae.data.datasets import (BINARIZE, DATASETS, FILE_DATASETS, SPLITS, DataNotFoundError, Split,
                                find_data_dir, load_dataset, load_split)
from jvae.data.fetch import DownloadError, default_cache_dir, download
from jvae.data.synthetic import gaussian2d
from jvae.data.tfds_source import is_tfds_name
from jvae.data.user import (ArraySource, FolderSource, NpySource, NpzSource, as_source,
                            clear_caches, is_user_name)
from jvae.data.transforms import (PIXEL_LEVELS, binarize_dynamic, binarize_static, centre,
                                  pixels_to_unit, resize_images, uncentre)
from jvae.data.validate import (REAL, UNIT_INTERVAL, InvalidDataError, Support, check_data,
                                check_points, likelihood_support, validate_images)

__all__ = [
    "DATASETS", "FILE_DATASETS", "SPLITS", "BINARIZE", "Split", "DataNotFoundError", "DownloadError",
    "find_data_dir", "default_cache_dir", "load_split", "load_dataset", "binarize_static",
    "PIXEL_LEVELS", "pixels_to_unit",
    "binarize_dynamic", "resize_images", "gaussian2d", "validate_images", "download",
    "ChecksumError", "InvalidDataError", "Support", "REAL", "UNIT_INTERVAL", "check_data",
    "likelihood_support", "is_tfds_name", "centre", "uncentre", "check_count", "check_number",
    "check_points", "ArraySource", "NpySource", "NpzSource", "FolderSource", "as_source",
    "is_user_name", "clear_caches",
]
