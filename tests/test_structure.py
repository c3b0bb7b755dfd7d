"""The structure of mmchat, machine-checked: the layers and cycles (.importlinter), the bug rules
(ruff.toml), the page's JavaScript (eslint.config.mjs), and what ast can see in mmchat/: file
and function sizes, private names reached into, JavaScript or CSS kept in Python strings, and
imports from tests/. Each failure names the file and line; each check takes a second or less."""

from __future__ import annotations

import ast
import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mmchat"
STATIC = PACKAGE / "web" / "static"
BIN = Path(sys.executable).parent

MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80


def _run(command: list[str | Path], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _report(what: str, result: subprocess.CompletedProcess) -> str:
    return f"{what} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"


@functools.cache
def _sources() -> dict[Path, tuple[str, ast.Module]]:
    """Every Python file in mmchat/, read and parsed once for all the ast checks."""
    parsed = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        parsed[path] = (text, ast.parse(text, filename=str(path)))
    return parsed


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def _listing(found: list[str]) -> str:
    """Findings ("path:line: what") in file and line order, one a line."""
    return "\n".join(sorted(found, key=lambda entry: (entry.split(":")[0], int(entry.split(":")[1]))))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_module(path: Path, node: ast.ImportFrom) -> str:
    """The absolute name of the module a `from ... import` reads from (relative ones resolved)."""
    if not node.level:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    return ".".join(base + ([node.module] if node.module else []))


def _is_module(name: str) -> bool:
    """Whether a dotted mmchat name is a module or package of ours (not a name inside one)."""
    if not name.startswith("mmchat"):
        return False
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file() or path.is_dir()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


# --- the tools ---------------------------------------------------------------------------


def test_import_contracts():
    """.importlinter: the layers, Gradio and HTTP kept at the edge, the log-in gate, no cycles."""
    result = _run([BIN / "lint-imports", "--no-cache", ROOT / ".importlinter"])
    assert result.returncode == 0, _report("lint-imports", result)


def test_ruff():
    """ruff.toml's rules over the whole repository (mmchat/, app.py, tests/, bench/, scripts/)."""
    result = _run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."])
    assert result.returncode == 0, _report("ruff check", result)


def test_eslint():
    """eslint.config.mjs over the page's scripts (mmchat/web/static/), the log-in page's
    (mmchat/users/) and any in tests/."""
    eslint = ROOT / "node_modules" / ".bin" / "eslint"
    if not eslint.exists() or shutil.which("node") is None:
        missing = "node_modules/ (run: npm ci)" if shutil.which("node") else "Node.js"
        if os.environ.get("CI"):
            pytest.fail(f"ESLint cannot run in CI: {missing} missing; scripts/dev-setup.sh installs it")
        pytest.skip(f"ESLint not installed here: {missing} missing (bash scripts/dev-setup.sh installs it)")
    scripts = sorted(STATIC.rglob("*.js")) + sorted((PACKAGE / "users").glob("*.js"))
    scripts += sorted(p for p in (ROOT / "tests").rglob("*.js") if ".fixture-cache" not in p.parts)
    if not scripts:
        return  # nothing to lint
    result = _run([eslint, "--max-warnings", "0", *(p.relative_to(ROOT) for p in scripts)])
    assert result.returncode == 0, _report("eslint", result)


# --- what ast sees in mmchat/ ---------------------------------------------------------------


def test_no_file_over_450_lines():
    long = [f"{_where(path, 1)}: {len(text.splitlines())} lines (at most {MAX_FILE_LINES})"
            for path, (text, _) in _sources().items() if len(text.splitlines()) > MAX_FILE_LINES]
    assert not long, "Files too long; split each by what it is for:\n" + "\n".join(long)


def test_no_function_over_80_lines():
    long = []
    for path, (_, tree) in _sources().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{_where(path, node.lineno)}: {node.name}() is {lines} lines "
                                f"(at most {MAX_FUNCTION_LINES})")
    assert not long, "Functions too long:\n" + _listing(long)


def _module_aliases(path: Path, tree: ast.Module) -> dict[str, str]:
    """The local names in a file that are bound to mmchat modules, and which module each is."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mmchat"):
                    local = alias.asname or alias.name.split(".")[0]
                    aliases[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom):
            source = _imported_module(path, node)
            for alias in node.names:
                if _is_module(f"{source}.{alias.name}"):
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
    return aliases


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def test_no_private_names_from_other_modules():
    """`from mmchat.x import _y` and `x._y` on an imported mmchat module reach past x's interface."""
    found = []
    for path, (_, tree) in _sources().items():
        aliases = _module_aliases(path, tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _imported_module(path, node)
                if source.startswith("mmchat"):
                    found += [f"{_where(path, node.lineno)}: from {source} import {alias.name}"
                              for alias in node.names if _private(alias.name)]
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                owner = _dotted(node.value)
                if owner is None:
                    continue
                head, _, rest = owner.partition(".")
                module = ".".join(filter(None, [aliases.get(head), rest]))
                if head in aliases and _is_module(module):
                    found.append(f"{_where(path, node.lineno)}: {owner}.{node.attr} ({module}'s private name)")
    assert not found, "Private names used from another module (make them public, or move the code):\n" + \
        _listing(found)


# JavaScript or CSS, by what gives it away: a script or style tag; a function that reaches into
# the document; a CSS rule (a selector, then `{ property: value;`).
_CSS_RULE = re.compile(r"[\w\])*>.#:-]\s*\{\s*[a-z-]+\s*:\s*[^;{}\n]+;")
_BROWSER_CODE = {
    # (one that loads a file, <script src="...">, holds no code)
    "a <script> tag": lambda text: bool(re.search(r"<script(?![^>]*\bsrc=)", text, re.IGNORECASE)),
    "a <style> tag": lambda text: "<style" in text.lower(),
    "JavaScript": lambda text: "document." in text and (re.search(r"\bfunction\b", text) or "=>" in text),
    "CSS rules": lambda text: bool(_CSS_RULE.search(text)),
}


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _string_pieces(tree: ast.Module):
    """Each string literal (an f-string's literal parts joined) with its first line and its size."""
    skip = _docstrings(tree)
    inside_fstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [part for part in node.values if isinstance(part, ast.Constant)]
            inside_fstrings.update(id(part) for part in parts)
            yield node, "".join(str(part.value) for part in parts)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if id(node) not in inside_fstrings:
                yield node, node.value


def _js_hooks(tree: ast.Module) -> list[tuple[int, str]]:
    """`js=` hooks (given directly, or by a name bound at module level) whose code is more than
    one line: each string literal in the hook's expression is measured (a one-line hook may
    still be filled in with `%` or an f-string)."""
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            constants[node.targets[0].id] = node.value
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "js":
            value = constants.get(node.value.id, node.value) if isinstance(node.value, ast.Name) else node.value
            for piece in ast.walk(value):
                if isinstance(piece, ast.JoinedStr) or (isinstance(piece, ast.Constant) and isinstance(piece.value, str)):
                    text = piece.value if isinstance(piece, ast.Constant) else ""
                    lines = max(piece.end_lineno - piece.lineno + 1, text.count("\n") + 1)
                    if lines > 1:
                        found.append((piece.lineno, f"a js= hook of {lines} lines"))
    return found


def test_no_javascript_or_css_in_python_strings():
    """Browser code lives in mmchat/web/static/ (STYLE.md, habit 15): a Python file may hold a
    one-line `js=` hook, no more."""
    found = []
    for path, (_, tree) in _sources().items():
        for node, text in _string_pieces(tree):
            lines = max(node.end_lineno - node.lineno + 1, text.count("\n") + 1)
            if lines <= 2:
                continue
            found += [f"{_where(path, node.lineno)}: {what} in a {lines}-line string"
                      for what, looks_like in _BROWSER_CODE.items() if looks_like(text)]
        found += [f"{_where(path, line)}: {what}" for line, what in sorted(set(_js_hooks(tree)))]
    assert not found, "JavaScript or CSS in Python (move it to mmchat/web/static/):\n" + _listing(found)


def test_nothing_imported_from_tests():
    """mmchat/ runs without tests/: a path into tests/ (the page's test model) is fine, an import is not."""
    tests = ROOT / "tests"
    test_modules = {"tests"} | {p.stem for p in tests.glob("*.py")} | {p.name for p in tests.iterdir()
                                                                        if (p / "__init__.py").is_file()}
    found = []
    for path, (_, tree) in _sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            found += [f"{_where(path, node.lineno)}: imports {name}" for name in names
                      if name.split(".")[0] in test_modules]
    assert not found, "mmchat/ imports from tests/:\n" + _listing(found)
