"""SHA-256 verification of local data files on first use, cached in-process and on disk.

A file that is found locally (in ``data_dir``, ``$JVAE_DATA_DIR`` or the download cache) is
hashed once and compared with the digest pinned for its dataset and name: MNIST and
Fashion-MNIST in :data:`jvae.data.fetch.SHA256`, the fixed binarised MNIST in
:data:`BINARIZED_MNIST_SHA256`. A verified file is remembered by ``(path, size, mtime_ns)``
in this process and in a small JSON file in the jvae cache folder
(:func:`jvae.data.fetch.default_cache_dir`, file :data:`CACHE_FILE`), so later runs do not
hash it again until it changes. Writing that cache is best effort: a folder that cannot be
written only costs a re-hash next time.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pathlib
import tempfile

__all__ = ["BINARIZED_MNIST_SHA256", "CACHE_FILE", "ChecksumError", "known_sha256",
           "identify", "verify_file"]

_dl = importlib.import_module("jvae.data.fetch")  # the module (jvae.data rebinds "download")

#: SHA-256 of the fixed binarised MNIST files (as listed in the data folder's SHA256SUMS).
BINARIZED_MNIST_SHA256 = {
    "binarized_mnist_train.npz":
        "45edb58ce8d03049617f5027bab269868beaffe185b694e44d1b03da5dc9fa77",
    "binarized_mnist_valid.npz":
        "aa5afb91d8c8c9da72dd501c5bed240c49a6f6c10cd81cec948b4c271b419106",
    "binarized_mnist_test.npz":
        "8281155e3d45668103179850b2cc10520441e0a3f3ae11af24357203773e11c9",
}

#: Name of the persistent verification cache inside the jvae cache folder.
CACHE_FILE = "verified_checksums.json"

_BLOCK = 1 << 20
_VERIFIED: set[tuple[str, int, int, str]] = set()  # (abs path, size, mtime_ns, digest)


class ChecksumError(ValueError):
    """Raised when a local data file's SHA-256 differs from the digest pinned for it."""


def known_sha256() -> dict[str, dict[str, str]]:
    """The pinned digests, ``{dataset: {file name: sha256}}`` (read live from
    :data:`jvae.data.fetch.SHA256`, plus :data:`BINARIZED_MNIST_SHA256`)."""
    table = {name: dict(files) for name, files in _dl.SHA256.items()}
    table["binarized_mnist"] = dict(BINARIZED_MNIST_SHA256)
    return table


def identify(digest: str) -> str | None:
    """``"dataset/file"`` of the known file with this SHA-256, or ``None``."""
    for name, files in known_sha256().items():
        for fname, known in files.items():
            if known == digest:
                return f"{name}/{fname}"
    return None


def verify_file(path: str | os.PathLike, name: str, *, where: str = "",
                cache_dir=None) -> None:
    """Checks a local file of dataset ``name`` against its pinned SHA-256 (once per version).

    The file's pinned digest is looked up by ``name`` and the file's base name; a file with no
    pinned digest is accepted unchecked. A file already verified with the same
    ``(path, size, mtime_ns)``, in this process or (through the JSON cache in
    ``default_cache_dir(cache_dir)``) in an earlier one, is not hashed again.

    Args:
        path: the file.
        name: its dataset, a key of :func:`known_sha256`.
        where: how the folder was found, for the error message (e.g. ``"data_dir"``).
        cache_dir: jvae cache folder holding the persistent cache; defaults to
            :func:`jvae.data.fetch.default_cache_dir`.

    Raises:
        ChecksumError: (a ``ValueError``) one line naming the file, where it was found, the
            expected and actual digests, the dataset the file really is when its digest is
            known, and the remedies (replace the file, ``download=True``, ``verify=False``).
    """
    path = pathlib.Path(path)
    expected = known_sha256().get(name, {}).get(path.name)
    if expected is None:
        return
    st = path.stat()
    abspath = os.path.abspath(path)
    key = (abspath, st.st_size, st.st_mtime_ns, expected)
    if key in _VERIFIED:
        return
    cache_path = _dl.default_cache_dir(cache_dir) / CACHE_FILE
    entries = _read_cache(cache_path)
    if entries.get(abspath) == [st.st_size, st.st_mtime_ns, expected]:
        _VERIFIED.add(key)
        return
    actual = _file_sha256(path)
    if actual != expected:
        raise ChecksumError(_mismatch_message(path, name, where, expected, actual, cache_dir))
    _VERIFIED.add(key)
    entries = {p: e for p, e in entries.items() if os.path.exists(p)}  # drop removed files
    entries[abspath] = [st.st_size, st.st_mtime_ns, actual]
    _write_cache(cache_path, entries)


# ----------------------------------------------------------------------------- helpers


def _file_sha256(path: pathlib.Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (uncached: see :func:`verify_file`)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _mismatch_message(path, name, where, expected, actual, cache_dir) -> str:
    found = f" (found through {where})" if where else ""
    really = identify(actual)
    if really is not None and really != f"{name}/{path.name}":
        what = f"it is the {really.split('/')[0]} file {really}, not {name}/{path.name}"
    else:
        what = f"it is not a known {name} file (corrupt, truncated or another dataset)"
    fixes = f"replace it with the real {name}/{path.name}"
    if name in _dl.SHA256:
        fixes += (f", pass download=True to fetch verified copies into "
                  f"{_dl.default_cache_dir(cache_dir) / name}")
    return (f"{path}{found}: SHA-256 {actual} does not match the expected {expected} for "
            f"{name}/{path.name}: {what}. To fix it, {fixes}, or pass verify=False "
            "(config.dataset.verify_checksums=False) to skip the check.")


def _read_cache(path: pathlib.Path) -> dict:
    """The persistent cache's entries ``{abs path: [size, mtime_ns, sha256]}``; ``{}`` if
    the file is missing, unreadable or malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _write_cache(path: pathlib.Path, entries: dict) -> None:
    """Atomically rewrites the persistent cache; any OS error is ignored (best effort)."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": 1, "files": entries}, f, indent=0, sort_keys=True)
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            try:
                os.remove(tmp)
            except OSError:
                pass
