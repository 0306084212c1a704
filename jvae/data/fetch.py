"""Fetching MNIST, Fashion-MNIST and CIFAR-10 into a local cache, verified by checksum.

Only ``urllib`` is used. Each file is streamed to a temporary file in its destination folder,
checked against the digest pinned below (SHA-256 for the MNIST family, the published MD5 for
the CIFAR-10 archive), and moved into place with ``os.replace``, so a cache never holds a
partial or unverified file under its final name.

Note: ``jvae.data`` re-exports :func:`download`; reach this module's tables
(``MIRRORS``, ``SHA256``) through ``importlib.import_module("jvae.data.fetch")`` if a package
attribute named ``download`` is the function.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import pathlib
import tempfile
import urllib.request

__all__ = ["DownloadError", "MIRRORS", "SHA256", "MD5", "default_cache_dir", "download",
           "downloadable"]

#: Base URLs tried in order for each dataset.
MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}

#: SHA-256 of every file (the values many public loaders pin; see the data README).
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz":
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz":
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz":
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz":
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz":
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz":
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz":
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz":
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

#: MD5 of files whose publishers give only an MD5 (the CIFAR-10 "python version" archive).
MD5 = {
    "cifar10": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
}

_BLOCK = 1 << 20


class DownloadError(OSError):
    """Raised when a file could not be fetched and verified from any mirror."""


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Returns ``cache_dir`` if given, else ``$JVAE_CACHE_DIR``, else ``~/.cache/jvae``."""
    if cache_dir is None:
        cache_dir = os.environ.get("JVAE_CACHE_DIR") or "~/.cache/jvae"
    return pathlib.Path(cache_dir).expanduser()


def downloadable() -> tuple[str, ...]:
    """Names of the datasets :func:`download` can fetch."""
    return tuple(SHA256) + tuple(n for n in MD5 if n not in SHA256)


def download(name: str, *, cache_dir=None, mirrors=None, timeout: float = 30.0) -> pathlib.Path:
    """Downloads the files of a dataset into ``cache_dir/<name>/``: the four IDX files of
    MNIST or Fashion-MNIST, or CIFAR-10's ``cifar-10-python.tar.gz`` (170 MB, kept packed:
    :mod:`jvae.data.cifar` reads the archive in place).

    Files already in the cache with the right checksum are kept. Each missing file is taken
    from the first mirror that serves it with the right checksum; a mismatch discards the
    temporary file and moves on to the next mirror.

    Args:
        name: ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"`` (binarized_mnist must be
            placed by hand).
        cache_dir: cache root; defaults to :func:`default_cache_dir`.
        mirrors: base URLs to try in order (a file's URL is ``base + file name``);
            defaults to ``MIRRORS[name]``.
        timeout: socket timeout in seconds per request.

    Returns:
        The folder ``cache_dir/<name>`` holding the verified files.

    Raises:
        ValueError: ``name`` cannot be downloaded.
        DownloadError: some file failed on every mirror; the message names the file and,
            per mirror, whether it was a checksum mismatch or a network error.
    """
    if name not in downloadable():
        raise ValueError(f"cannot download {name!r}; downloadable datasets: "
                         f"{', '.join(downloadable())} (binarized_mnist must be placed by hand)")
    mirrors = tuple(MIRRORS[name] if mirrors is None else mirrors)
    folder = default_cache_dir(cache_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    algorithm = "sha256" if name in SHA256 else "md5"
    table = SHA256 if name in SHA256 else MD5
    for fname, digest in table[name].items():
        target = folder / fname
        if target.is_file() and _digest(str(target), *_stat(target), algorithm) == digest:
            continue
        failures = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + fname
            problem = _fetch(url, target, digest, timeout, algorithm)
            if problem is None:
                break
            failures.append(f"  {url}: {problem}")
        else:
            raise DownloadError(f"could not download {name}/{fname}; mirrors tried:\n"
                                + "\n".join(failures or ["  (no mirrors given)"]))
    return folder


def _fetch(url: str, target: pathlib.Path, digest: str, timeout: float,
           algorithm: str = "sha256") -> str | None:
    """Streams ``url`` to ``target`` atomically if its ``algorithm`` digest is ``digest``;
    else says why not."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        h = hashlib.new(algorithm)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while block := resp.read(_BLOCK):
                h.update(block)
                out.write(block)
        if h.hexdigest() != digest:
            return (f"checksum mismatch ({algorithm.upper().replace('SHA', 'SHA-')} "
                    f"{h.hexdigest()}, expected {digest})")
        os.replace(tmp, target)
        return None
    except (OSError, http.client.HTTPException, ValueError) as e:
        return f"network error ({type(e).__name__}: {e})"
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _stat(path: pathlib.Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file, cached on (path, size, mtime) so repeated checks are free."""
    return _digest(path, size, mtime_ns, "sha256")


@functools.lru_cache(maxsize=32)
def _digest(path: str, size: int, mtime_ns: int, algorithm: str) -> str:
    """``algorithm`` digest of a file, cached on (path, size, mtime)."""
    del size, mtime_ns  # cache key only
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()
