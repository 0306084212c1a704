"""The package's architecture, held by tests: the import contracts of pyproject.toml
(import-linter), no module hidden behind an attribute of the same name, thin entry points,
no function of jvae/ past 80 lines of code without a reason, and no test or experiment that
edits the module search path (experiments are a package)."""

from __future__ import annotations

import ast
import importlib
import pathlib
import pkgutil
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80
ENTRY_POINTS = ("train", "evaluate", "launch")


def broken_contracts(report: str) -> str:
    """One line summarising lint-imports' report of broken contracts: for each broken
    contract, the import that completes its first offending chain, e.g. ``layers: ...:
    jvae.models.priors -> jvae.runs.checkpoints (l.18)``."""
    section = report.split("Broken contracts", 1)[-1]
    lines = section.splitlines()
    parts, contract, chain = [], None, None
    for i, line in enumerate(lines + [""]):
        if i + 1 < len(lines) and line.strip() and set(lines[i + 1].strip()) == {"-"}:
            contract, chain = line.strip(), None
            continue
        link = re.match(r"^[-\s]\s*(\S+ -> \S+ \(l\.[\d, l.]+\))", line)
        if link and contract and (chain is None or not line.startswith("-")):
            chain = link.group(1)             # the chain's links, up to its last
        elif chain and contract:
            parts.append(f"{contract}: {chain}")
            contract, chain = None, None      # the first chain of each contract
    return "; ".join(parts) or " ".join(report.split())[-300:]


def test_import_contracts_hold():
    exe = shutil.which("lint-imports", path=str(pathlib.Path(sys.executable).parent))
    if exe is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]' (import-linter)")
    proc = subprocess.run([exe, "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"import contract broken: {broken_contracts(proc.stdout)}"
    assert "0 broken" in proc.stdout and "3 kept" in proc.stdout, proc.stdout[-500:]


def test_the_summary_names_the_offending_import():
    report = """Broken contracts
----------------

layers: a module imports only from the layers below it
------------------------------------------------------

jvae.models is not allowed to import jvae.runs:

- jvae.models.priors -> jvae.runs.checkpoints (l.18)


plotting is a leaf
------------------

jvae.plotting is not allowed to import jax:

-   jvae.plotting.images -> jvae.evaluation (l.3)
    jvae.evaluation -> jax (l.9)
"""
    line = broken_contracts(report)
    assert "\n" not in line
    assert line == ("layers: a module imports only from the layers below it: "
                    "jvae.models.priors -> jvae.runs.checkpoints (l.18); plotting is a leaf: "
                    "jvae.evaluation -> jax (l.9)")


def _packages():
    import jvae

    yield jvae
    for info in pkgutil.walk_packages(jvae.__path__, "jvae."):
        if info.ispkg:
            yield importlib.import_module(info.name)


def test_no_module_is_hidden_behind_an_attribute_of_its_name():
    hidden = []
    for package in _packages():
        for info in pkgutil.iter_modules(package.__path__):
            name = f"{package.__name__}.{info.name}"
            if info.name in ENTRY_POINTS and package.__name__ == "jvae":
                continue                # python -m entry points, never imported as attributes
            module = importlib.import_module(name)
            value = getattr(package, info.name, module)
            if value is not module:
                hidden.append(f"{name} (hidden by {type(value).__name__} {package.__name__}."
                              f"{info.name})")
    assert not hidden, f"modules shadowed by a package attribute: {hidden}"


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_entry_points_are_thin(name):
    tree = ast.parse((ROOT / "jvae" / f"{name}.py").read_text())
    defined = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert not defined, f"jvae/{name}.py holds logic ({defined}); it belongs in jvae/cli/{name}.py"
    imports = [n.module for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert f"jvae.cli.{name}" in imports


def _code_lines(source: list[str], node: ast.AST) -> int:
    skip = set()
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        skip = set(range(first.lineno, first.end_lineno + 1))
    return sum(1 for i in range(node.lineno, node.end_lineno + 1)
               if i not in skip and source[i - 1].strip()
               and not source[i - 1].strip().startswith("#"))


def test_no_long_function_without_a_reason():
    long = []
    for path in sorted((ROOT / "jvae").rglob("*.py")):
        text = path.read_text()
        source = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            n = _code_lines(source, node)
            reason = "Long because" in (ast.get_docstring(node) or "")
            if n > MAX_FUNCTION_LINES and not reason:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, (f"functions over {MAX_FUNCTION_LINES} lines of code; split them or say "
                      f"'Long because ...' in the docstring: {long}")


def test_no_test_or_experiment_edits_the_module_search_path():
    search_path = "sys" + r"\.path"          # spelled apart so this file does not match itself
    pattern = re.compile(search_path + r"\.(insert|append|extend)|" + search_path + r"\s*[+]?=")
    offenders = [f"{p.relative_to(ROOT)}:{i}"
                 for folder in ("tests", "experiments")
                 for p in sorted((ROOT / folder).rglob("*.py"))
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if pattern.search(line)]
    assert not offenders, (f"the module search path is edited in {offenders}: import "
                           "experiments as a package (python -m experiments.NAME)")
