"""What the command lines' ``--help`` and ``--print-config`` show: docstrings as plain text,
the bundled configs (``experiments/configs/*.py``, found on disk) and a config's fields."""

from __future__ import annotations

import ast
import importlib.util
import pathlib
import re
import textwrap

import ml_collections

__all__ = ["plain_text", "configs_dir", "bundled_configs", "configs_help", "config_lines",
           "parse_flag"]

_EXAMPLE = "pytorch_example.py"       # the README's main command, when bundled
_ROLE = re.compile(r":(?:func|mod|class|meth|data|attr|obj|exc):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain_text(text: str) -> str:
    """``text`` (reST from a docstring) as plain text: ``code`` and roles such as
    :func:`name` become ``code`` and ``name`` without their markup."""
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text))


def configs_dir() -> pathlib.Path | None:
    """The directory of the bundled configs: ``configs/`` of the ``experiments`` package
    (found without importing it), else ``experiments/configs`` beside the ``jvae`` package
    (a source checkout); ``None`` when neither exists (an installed jvae without the
    repository)."""
    candidates = []
    try:
        spec = importlib.util.find_spec("experiments")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [pathlib.Path(p) / "configs" for p in spec.submodule_search_locations]
    candidates.append(pathlib.Path(__file__).resolve().parents[2] / "experiments" / "configs")
    return next((c for c in candidates if c.is_dir()), None)


def bundled_configs(directory: pathlib.Path | None = None) -> list[tuple[pathlib.Path, str]]:
    """``(path, first line of its docstring)`` of every ``*.py`` config in ``directory``
    (default :func:`configs_dir`), by name; the files are parsed, not run."""
    directory = configs_dir() if directory is None else directory
    if directory is None:
        return []
    out = []
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        except (OSError, SyntaxError, ValueError):
            doc = ""
        out.append((path, plain_text(" ".join(doc.split("\n\n")[0].split()))))
    return out


def configs_help(prog: str, width: int = 90) -> str:
    """The ``--help`` epilog: the bundled configs (name and the first sentence of the
    docstring, wrapped to ``width`` characters) and how to print a config's fields."""
    directory = configs_dir()
    configs = bundled_configs(directory)
    if not configs:
        return ("bundled configs: none found (they live in experiments/configs/ of jvae's "
                "repository)")
    try:
        shown = directory.relative_to(pathlib.Path.cwd())
    except ValueError:
        shown = directory
    lines = [f"bundled configs, in {shown}/ (--config {shown}/NAME.py):"]
    pad = max(len(path.name) for path, _ in configs)
    for path, doc in configs:
        first = re.split(r"(?<=[.!?])\s", doc, maxsplit=1)[0]
        lines += textwrap.wrap(first, width, initial_indent=f"  {path.name:<{pad}}  ",
                               subsequent_indent=" " * (pad + 4)) or [f"  {path.name}"]
    names = [path.name for path, _ in configs]
    example = shown / (_EXAMPLE if _EXAMPLE in names else names[0])
    lines += ["", "Every field of a config with its value (the defaults, the file's changes and any",
              "--config.FIELD=VALUE given):", f"  {prog} --config {example} --print-config"]
    return "\n".join(lines)


def config_lines(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every leaf field of ``config`` as ``path=value``, written as ``--config.path=value``
    takes it (a string bare: ``dataset.name=mnist``), groups in their order."""
    out = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            out += config_lines(value, path + ".")
        else:
            out.append(f"{path}={value}")
    return out


_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")


def parse_flag(text: str) -> bool:
    """A boolean flag's value as absl spells it (``True``/``False``, ``t``/``f``, ``1``/``0``;
    ``yes``/``no`` too), case-insensitive; ``ValueError`` otherwise."""
    word = str(text).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected True or False, got {text!r}")
