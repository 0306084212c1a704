"""Reading run configs: config files, command-line overrides, ``config.json`` and resume checks.

- :func:`load_config_file` runs ``get_config()`` of an experiment file
  (``path.py`` or ``path.py:variant``) and checks that it returns a ``ConfigDict``.
- :func:`apply_override` sets ``--config.a.b=value``: unknown fields are refused with the
  closest valid name, values are parsed and checked against the field's type. Open groups
  (:data:`OPEN_GROUPS`: ``optim.param_groups``) take new keys: ``--config.optim.param_groups.encoder=1e-4``.
- :func:`config_from_json` rebuilds the config a run stored in its work directory.
- :func:`resume_differences` lists the fields a resumed run would change; only those in
  :data:`RESUMABLE` may change (``num_epochs`` only upwards).

Every error is a :class:`ConfigError` (a ``ValueError``) with a one-line message.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import pathlib
from typing import Any

import ml_collections

__all__ = ["ConfigError", "OPEN_GROUPS", "RESUMABLE", "load_config_file", "apply_override", "field_paths",
           "config_from_json", "normalised", "resume_differences"]

#: Fields (or groups, with every field below them) a resumed run may change: they affect
#: evaluation, figures, logging, checkpoint frequency, where data is read from and where the
#: work is placed, never the trained model or its random numbers.
#: Groups that take new keys from the command line (their values are numbers).
OPEN_GROUPS = ("optim.param_groups",)

RESUMABLE = ("num_epochs", "eval", "figures", "tensorboard", "checkpoint_every", "divergence",
             "dataset.data_dir", "dataset.download", "dataset.verify_checksums",
             "dataset.eval_split", "dataset.limit_eval", "dataset.test", "dataset.memory_budget",
             "data_parallel", "shard_seeds")


class ConfigError(ValueError):
    """A config file or override that cannot be used."""


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Load ``path.py`` or ``path.py:variant`` and return its ``get_config([variant])``."""
    path, sep, variant = spec.partition(".py:")
    path = pathlib.Path(path + ".py" if sep else spec)
    if not spec.strip():
        raise ConfigError("--config is empty; give an experiment file such as "
                          "experiments/configs/pytorch_example.py.")
    if not path.is_file():
        raise ConfigError(f"config file {path} not found (looked in {path.absolute().parent}); "
                          "the shipped configs are in experiments/configs/.")
    module_spec = importlib.util.spec_from_file_location(f"_jvae_config_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"config file {path} is not a Python file.")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - any error in the user's file is reported as one line
        raise ConfigError(f"config file {path} failed to load: {type(e).__name__}: "
                          f"{_one_line(e)}") from e
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"config file {path} does not define get_config().")
    call = f"get_config({variant!r})" if sep else "get_config()"
    try:
        config = get_config(variant) if sep else get_config()
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{call} of {path} failed: {type(e).__name__}: {_one_line(e)}") from e
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"get_config() of {path} returned a {type(config).__name__}, not an "
                          "ml_collections.ConfigDict (start from jvae.runs.defaults.default_config()).")
    return config


def field_paths(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Dotted paths of every field (leaves and groups) of ``config``."""
    out = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        out.append(path)
        if isinstance(value, ml_collections.ConfigDict):
            out.extend(field_paths(value, path + "."))
    return out


def apply_override(config: ml_collections.ConfigDict, path: str, text: str) -> None:
    """Set the field ``path`` (dotted, without ``config.``) from its command-line ``text``."""
    parts = path.split(".")
    if not path or any(not p for p in parts):
        raise ConfigError(f"--config.{path}: not a field name.")
    node = config
    for i, name in enumerate(parts[:-1]):
        if name not in node:
            _unknown(config, ".".join(parts[:i + 1]))
        node = node[name]
        if not isinstance(node, ml_collections.ConfigDict):
            raise ConfigError(f"--config.{'.'.join(parts[:i + 1])} is a value, not a group; "
                              f"it has no field {parts[i + 1]!r}.")
    leaf = parts[-1]
    if leaf not in node:
        if ".".join(parts[:-1]) in OPEN_GROUPS:
            value = _literal(text)   # an open group such as optim.param_groups
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"--config.{path}={text}: entries of "
                                  f"{'.'.join(parts[:-1])} are numbers.")
            with node.unlocked():
                node[leaf] = float(value)
            return
        _unknown(config, path)
    old = node[leaf]
    if isinstance(old, ml_collections.ConfigDict):
        raise ConfigError(f"--config.{path} is a group of fields ({', '.join(old.keys()) or 'empty'}"
                          f"); set one of them, e.g. --config.{path}.NAME=VALUE.")
    value = _parse_like(old, text, path)
    try:
        node[leaf] = value
    except (TypeError, ValueError) as e:
        raise ConfigError(f"--config.{path}={text}: {_one_line(e)}") from e


def normalised(config: ml_collections.ConfigDict | dict) -> dict:
    """The config as plain JSON data (tuples become lists), for comparisons and storage."""
    data = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
    return json.loads(json.dumps(data))


def config_from_json(path: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The ``ConfigDict`` a run stored as ``config.json`` (JSON lists back to tuples)."""
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} is unreadable ({_one_line(e)}); it should hold the run's "
                          "config as written by python -m jvae.train.") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a config (a JSON object).")
    from jvae.runs.defaults import default_config   # fields added since the run keep their defaults

    config = default_config()
    _merge(config, _tuples(data))
    return config


def resume_differences(stored: ml_collections.ConfigDict | dict,
                       config: ml_collections.ConfigDict | dict) -> tuple[list[str], list[str]]:
    """Compare a run's stored config with the config it is resumed with.

    Returns:
      ``(refused, allowed)``: dotted names of differing fields outside :data:`RESUMABLE`
      (with both values), and of those inside it. A lower ``num_epochs`` is refused.
    """
    a, b = _flatten(normalised(stored)), _flatten(normalised(config))
    refused, allowed = [], []
    for name in sorted(set(a) | set(b)):
        old, new = a.get(name, "<absent>"), b.get(name, "<absent>")
        if old == new:
            continue
        ok = any(name == r or name.startswith(r + ".") for r in RESUMABLE)
        if name == "num_epochs" and isinstance(old, int) and isinstance(new, int) and new < old:
            ok = False
        (allowed if ok else refused).append(f"{name} ({old!r} -> {new!r})")
    return refused, allowed


# ----------------------------------------------------------------------------- private


def _unknown(config: ml_collections.ConfigDict, path: str) -> None:
    paths = field_paths(config)
    close = difflib.get_close_matches(path, paths, n=1, cutoff=0.6)
    if not close:   # the leaf name anywhere, e.g. "likelihod" -> "model.likelihood"
        leaf = path.rsplit(".", 1)[-1]
        leaves = {p.rsplit(".", 1)[-1]: p for p in paths}
        names = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)
        close = [leaves[names[0]]] if names else []
    hint = f"; did you mean --config.{close[0]}?" if close else "; see jvae/config.py for the fields."
    raise ConfigError(f"unknown config field --config.{path}{hint}")


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _parse_like(old: Any, text: str, path: str) -> Any:
    def bad(kind: str) -> ConfigError:
        return ConfigError(f"--config.{path}={text}: expected {kind} (the field is "
                           f"{old!r}).")

    if isinstance(old, str):
        return text
    if isinstance(old, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise bad("true or false")
    value = _literal(text)
    if isinstance(old, int):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad("an integer")
        return value
    if isinstance(old, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if isinstance(old, (tuple, list)):
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = (value,)
        if not isinstance(value, (tuple, list)):
            raise bad("a tuple such as (400,) or (1, 2)")
        return tuple(value) if isinstance(old, tuple) else list(value)
    return value


def _merge(config: ml_collections.ConfigDict, data: dict) -> None:
    """Write ``data`` into ``config``; stored values (and fields) win, whatever their type."""
    with config.unlocked():
        for key, value in data.items():
            current = config[key] if key in config else None
            if isinstance(value, dict) and isinstance(current, ml_collections.ConfigDict):
                _merge(current, value)
                continue
            if key in config:
                del config[key]
            config[key] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value


def _tuples(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _tuples(v) for k, v in data.items()}
    if isinstance(data, list):
        return tuple(_tuples(v) for v in data)
    return data


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):   # an empty group adds nothing
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:297] + "..."
