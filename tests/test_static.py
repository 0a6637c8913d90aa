"""Lint, format and strict typing are part of the suite, so the README's command checks them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_lint() -> None:
    done = _run("ruff", "check", "src", "tests", "bench")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format() -> None:
    done = _run("ruff", "format", "--check", "src", "tests", "bench")
    assert done.returncode == 0, done.stdout + done.stderr


def test_complexity_within_budget() -> None:
    """STYLE.md's budget: no function in src/ over ruff's default McCabe complexity of 10."""
    done = _run("ruff", "check", "--select", "C901", "src")
    assert done.returncode == 0, done.stdout + done.stderr


def test_sizes_within_budget() -> None:
    """No module over 500 lines; no function over 60. A command in cli/ is measured from its
    body: its Typer signature is the list of its options."""
    import ast

    over = []
    for path in sorted((ROOT / "src" / "gptcli").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT / "src").as_posix()
        lines = text.count("\n")
        if lines > 500:
            over.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            assert node.end_lineno is not None
            start = node.lineno
            if name.startswith("gptcli/cli/"):
                body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body
                start = body[0].lineno
            if node.end_lineno - start + 1 > 60:
                over.append(f"{name}: {node.name} {node.end_lineno - start + 1} lines")
    assert over == []


def test_one_module_decodes() -> None:
    """One decode loop: llama_decode is called from engine/scheduler.py alone."""
    callers = sorted(
        path.relative_to(ROOT / "src").as_posix()
        for path in (ROOT / "src" / "gptcli").rglob("*.py")
        if "llama_decode(" in path.read_text(encoding="utf-8")
    )
    assert callers == ["gptcli/engine/scheduler.py"]


@pytest.mark.slow
def test_mypy_strict() -> None:
    done = _run("mypy")
    assert done.returncode == 0, done.stdout + done.stderr


def test_import_layers() -> None:
    """The contracts in pyproject.toml: each layer imports only the layers below it."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_tests_do_not_import_the_benchmarks() -> None:
    """bench/ may change what it measures at any time; a test must not change with it."""
    import ast

    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "bench"]
    assert offenders == []


def test_no_import_cycles() -> None:
    """No module imports itself through others, lazy and type-checking imports included."""
    import grimp

    graph = grimp.build_graph("gptcli", cache_dir=None)
    cycles = strongly_connected_components(
        {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    )
    assert [sorted(c) for c in cycles if len(c) > 1] == []


def strongly_connected_components(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (the graph is small, but recursion limits are not)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(component)
    return found
