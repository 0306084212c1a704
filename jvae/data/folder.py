"""Reader of a folder of PNG/JPEG images, with one subfolder per class optional.

Layouts::

    PATH/*.png|*.jpg|*.jpeg                 unlabelled images
    PATH/<class>/*.png|*.jpg|*.jpeg         labelled: class i is the i-th subfolder in
                                            sorted order

Images are decoded with Pillow (a dependency of matplotlib) in sorted file order. Grey images
are ``[H, W, 1]``; a folder mixing grey and RGB images gets RGB throughout (grey repeated);
palette images are converted to RGB (RGBA with transparency). Decoded folders are cached
in-process, keyed on every file's path, size and modification time.
"""

from __future__ import annotations

import functools
import pathlib

import numpy as np

from jvae.data.idx import one_line, readonly
from jvae.data.transforms import resize_images

__all__ = ["IMAGE_SUFFIXES", "list_images", "read_folder"]

#: File endings read as images (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def list_images(path: pathlib.Path) -> tuple[list[pathlib.Path], list[int] | None, list[str]]:
    """The image files of a folder, their class indices and the class names.

    Args:
        path: the folder.

    Returns:
        ``(files, labels, classes)``: files in sorted order; ``labels`` (one class index per
        file) and ``classes`` (the sorted subfolder names) when the images sit in
        subfolders, else ``None`` and ``[]``.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: one line naming the folder: not a folder, no images, or images both at
            the top level and in subfolders.
    """
    if not path.exists():
        raise FileNotFoundError(f"folder:{path}: no such folder (looked for "
                                f"{path.resolve()})")
    if not path.is_dir():
        raise ValueError(f"folder:{path}: not a folder (a file); use npy:{path} or "
                         f"npz:{path} for arrays")
    top = _images_in(path)
    subs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes = [d for d in subs if _images_in(d)]
    if top and classes:
        raise ValueError(f"folder:{path}: {len(top)} images at the top level and "
                         f"{len(classes)} class subfolders ({classes[0].name}/, ...); keep "
                         "either all images at the top level or all in class subfolders")
    if top:
        return top, None, []
    if not classes:
        raise ValueError(f"folder:{path}: empty: no images ending in "
                         f"{', '.join(IMAGE_SUFFIXES)} in it or in its subfolders")
    files, labels = [], []
    for i, d in enumerate(classes):
        found = _images_in(d)
        files += found
        labels += [i] * len(found)
    return files, labels, [d.name for d in classes]


def read_folder(path: pathlib.Path, resize: int | tuple[int, int] | None = None
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Decodes every image of a folder (see the module docstring for the layouts).

    Args:
        path: the folder.
        resize: ``None`` (every image must have the same size), a side ``S`` or ``(H, W)``:
            images of another size are resized to it (antialiased bilinear,
            :func:`jvae.data.resize_images`).

    Returns:
        ``(images, labels)``: uint8 ``[N, H, W, C]`` (float32 in ``[0, 1]`` when any image
        was resized), ``C`` 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA); int32 ``[N]``
        class indices or ``None``. Read-only, shared with the in-process cache.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: one line naming the folder or file: empty folder, a corrupt image,
            mixed sizes without ``resize``, mixed channel counts.
    """
    files, labels, _ = list_images(path)
    stats = tuple((str(f), *_stat(f)) for f in files)
    size = None if resize is None else _size(resize)
    return _read(str(path), stats, None if labels is None else tuple(labels), size)


# ----------------------------------------------------------------------------- helpers


def _images_in(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")
                  and f.suffix.lower() in IMAGE_SUFFIXES)


def _stat(f: pathlib.Path) -> tuple[int, int]:
    st = f.stat()
    return st.st_size, st.st_mtime_ns


def _size(resize) -> tuple[int, int]:
    pair = (resize, resize) if not hasattr(resize, "__len__") else tuple(resize)
    if (len(pair) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
                              or s <= 0 for s in pair)):
        raise ValueError(f"resize must be a positive int S or a pair (H, W), got {resize!r}")
    return int(pair[0]), int(pair[1])


@functools.lru_cache(maxsize=2)
def _read(path: str, stats: tuple, labels: tuple | None, size: tuple[int, int] | None):
    arrays = [_decode(pathlib.Path(f)) for f, *_ in stats]
    channels = {a.shape[2] for a in arrays}
    if channels == {1, 3}:                      # grey among colour: promote to RGB
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    elif len(channels) > 1:
        first = {c: next(s[0] for s, a in zip(stats, arrays) if a.shape[2] == c)
                 for c in sorted(channels)}
        raise ValueError(f"folder:{path}: images with different channel counts "
                         f"({', '.join(f'{c} in {pathlib.Path(f).name}' for c, f in first.items())}"
                         "); convert them to one mode (grey or RGB)")
    shapes = {a.shape[:2] for a in arrays}
    if size is None and len(shapes) > 1:
        a, b = sorted(shapes)[:2]
        fa = next(s[0] for s, x in zip(stats, arrays) if x.shape[:2] == a)
        fb = next(s[0] for s, x in zip(stats, arrays) if x.shape[:2] == b)
        raise ValueError(f"folder:{path}: images of {len(shapes)} sizes ({pathlib.Path(fa).name} "
                         f"is {a[0]}x{a[1]}, {pathlib.Path(fb).name} is {b[0]}x{b[1]}); "
                         "resize them to one size with resize=S (config.dataset.resize)")
    if size is None or shapes == {size}:
        images = np.stack(arrays)
    else:
        images = np.empty((len(arrays), *size, arrays[0].shape[2]), np.float32)
        for i, a in enumerate(arrays):
            images[i] = (resize_images(a[None], size)[0] if a.shape[:2] != size
                         else a.astype(np.float32))
        images /= 255.0
    out_labels = None if labels is None else readonly(np.asarray(labels, np.int32))
    return readonly(images), out_labels


def _decode(f: pathlib.Path) -> np.ndarray:
    """uint8 ``[H, W, C]`` of one image file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode == "1" or im.mode.startswith("I") or im.mode == "F":
                im = im.convert("L")
            elif im.mode not in ("L", "LA", "RGB", "RGBA"):
                im = im.convert("RGB")
            a = np.asarray(im, np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"{f}: not a readable PNG/JPEG image, truncated or corrupt "
                         f"({one_line(e)})") from e
    return a[..., None] if a.ndim == 2 else a
