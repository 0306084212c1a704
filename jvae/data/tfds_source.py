"""TensorFlow Datasets as a data source, read through ``tfds.data_source`` (no TensorFlow).

``tfds.data_source(name, split=...)`` opens a prepared dataset stored as ArrayRecord files for
random access, decoding each example with numpy only, so TensorFlow itself is never imported
(the optional extra ``pip install -e '.[tfds]'`` installs ``tensorflow-datasets`` and
``array_record``). Any image dataset works by name: ``load_split("tfds:cifar10", "train")``,
``"tfds:celeb_a"``, ``"tfds:mnist"``; images come back as float32 ``[N, H, W, C]`` in
``[0, 1]`` (uint8 pixels divided by 255), with the ``label`` feature as int32 labels when the
dataset has one.

The dataset must be prepared first (downloaded and converted by TFDS, in the ArrayRecord file
format), e.g. ``tfds build cifar10 --file_format=array_record`` or
``tfds.builder("cifar10", file_format="array_record").download_and_prepare()``; jvae does not
download through TFDS. Split names are TFDS's (``"train"``, ``"test"``, and TFDS slicing such
as ``"train[:90%]"``); jvae's ``"train_full"`` means TFDS's ``"train"``.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import os

import numpy as np

from jvae.data.idx import one_line, readonly

__all__ = ["PREFIX", "is_tfds_name", "read_tfds"]

#: Dataset names starting with this prefix are TFDS names (``"tfds:cifar10"``).
PREFIX = "tfds:"
_CHUNK = 1024


def is_tfds_name(name) -> bool:
    """Whether ``name`` selects a TFDS dataset (``"tfds:<name>"``)."""
    return isinstance(name, str) and name.startswith(PREFIX)


def read_tfds(name: str, split: str, *, data_dir=None, image_key: str = "image",
              limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads images (and labels) of a prepared TFDS dataset with ``tfds.data_source``.

    Args:
        name: ``"tfds:<dataset>"`` or the bare TFDS name (``"cifar10"``,
            ``"celeb_a"``, ``"cifar10:3.0.2"``).
        split: a TFDS split (``"train"``, ``"test"``, ``"train[:1000]"``); ``"train_full"``
            is read as ``"train"``.
        data_dir: TFDS data directory; ``None``: TFDS's default (``$TFDS_DATA_DIR`` or
            ``~/tensorflow_datasets``).
        image_key: the image feature.
        limit: read only the first ``limit`` examples.

    Returns:
        ``(images float32 [N, H, W, C] in [0, 1], labels int32 [N] or None)``, read-only.

    Raises:
        ImportError: tensorflow-datasets is not installed (names the extra to install).
        ValueError: an unknown dataset (with the closest names), an unknown split or image
            feature, images of different shapes, or pixels that are not 8-bit.
        DataNotFoundError: the dataset is not prepared in ``data_dir``.
    """
    base = name[len(PREFIX):] if is_tfds_name(name) else name
    split = "train" if split == "train_full" else split
    images, labels = _read(base, split, None if data_dir is None else os.fspath(data_dir),
                           image_key, limit)
    return images, labels


@functools.lru_cache(maxsize=4)
def _read(name: str, split: str, data_dir, image_key: str, limit):
    tfds = _import_tfds()
    source = _open(tfds, name, split, data_dir)
    count = len(source) if limit is None else min(int(limit), len(source))
    if count == 0:
        raise ValueError(f"tfds:{name} split {split!r} is empty")
    first = source[0]
    if image_key not in first:
        raise ValueError(f"tfds:{name} has no image feature {image_key!r}; its features are "
                         f"{sorted(first)} (set config.dataset.tfds_image_key)")
    shape = np.shape(first[image_key])
    if len(shape) != 3:
        raise ValueError(f"tfds:{name} feature {image_key!r} has shape {shape}, not an image "
                         "[H, W, C]")
    images = np.empty((count,) + tuple(shape), np.float32)
    has_label = "label" in first and np.ndim(first["label"]) == 0
    labels = np.empty(count, np.int32) if has_label else None
    for start in range(0, count, _CHUNK):       # chunks keep only one uint8 chunk alive
        stop = min(start + _CHUNK, count)
        pixels = []
        for i in range(start, stop):            # the data source reads one record per index
            example = first if i == 0 else source[i]
            image = np.asarray(example[image_key])
            if image.shape != shape:
                raise ValueError(f"tfds:{name} example {i} has an image of shape {image.shape}"
                                 f", the first {shape}; jvae needs images of one size")
            pixels.append(image)
            if has_label:
                labels[i] = int(example["label"])
        chunk = np.stack(pixels)
        if chunk.dtype != np.uint8:
            raise ValueError(f"tfds:{name} feature {image_key!r} has dtype {chunk.dtype}, not "
                             "8-bit pixels")
        images[start:stop] = chunk
    images /= 255.0
    return readonly(images), None if labels is None else readonly(labels)


def _import_tfds():
    try:
        return importlib.import_module("tensorflow_datasets")
    except ImportError as e:
        raise ImportError("reading tfds:* datasets needs tensorflow-datasets: pip install "
                          "'jvae[tfds]' (or pip install tensorflow-datasets array_record); "
                          "TensorFlow itself is not needed") from e


def _open(tfds, name: str, split: str, data_dir):
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except tfds.core.registered.DatasetNotFoundError as e:
        known = list(tfds.list_builders(with_community_datasets=False))   # (community: TF)
        close = difflib.get_close_matches(name.split(":")[0], known, n=1)
        hint = f"did you mean 'tfds:{close[0]}'? " if close else ""
        raise ValueError(f"unknown TFDS dataset {name!r}; {hint}see tfds.list_builders() for "
                         "the names") from e
    except (ValueError, KeyError) as e:
        text = one_line(e)
        if _NOT_GENERATED in text or "splits` is empty" in text:
            raise _not_prepared(name, data_dir, e) from e   # TFDS: no split has data
        if "split" in text.lower():
            raise ValueError(f"tfds:{name}: unknown split {split!r} ({text[:300]})") from e
        raise
    except (AssertionError, FileNotFoundError, OSError, RuntimeError) as e:
        # RuntimeError: TFDS's NotImplementedError for a dataset not prepared as ArrayRecord
        raise _not_prepared(name, data_dir, e) from e


# What TFDS says (a KeyError) when no split of a dataset has been generated in the data dir.
_NOT_GENERATED = "has not been generated"


def _not_prepared(name: str, data_dir, error: BaseException):
    """The documented not-found error of a TFDS dataset that is not prepared (for random
    access) in ``data_dir``, with the ``tfds build`` command that prepares it."""
    from jvae.data.datasets import DataNotFoundError

    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return DataNotFoundError(
        f"tfds:{name} is not prepared for random access in {where} (TFDS: "
        f"{one_line(error)[:240]}). To provide it, "
        f"run `tfds build {name} --file_format=array_record --data_dir {where}` (or "
        f"tfds.builder({name!r}, file_format='array_record').download_and_prepare()), "
        "or set config.dataset.data_dir to the TFDS data directory holding it.")
