"""The layout the README describes is the code's: modules, sizes and one-way imports."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (ROOT / "dmv_fast", ROOT / "export" / "dmv_fast_export")
MAX_LINES = 550


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in pkg.rglob("*.py") if p.name != "__main__.py")


def _architecture_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Architecture\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, "README.md has no '## Architecture' section"
    return match.group(1)


def test_readme_architecture_lists_every_module():
    section = _architecture_section()
    listed = set(re.findall(r"`((?:dmv_fast|export)/[\w/]+\.py)`", section))
    actual = {p.relative_to(ROOT).as_posix() for p in _modules() if p.name != "__init__.py"}
    assert not actual - listed, f"modules missing from the README: {sorted(actual - listed)}"
    assert not listed - actual, f"README lists modules that do not exist: {sorted(listed - actual)}"


def test_no_module_is_over_the_size_limit():
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in _modules()}
    big = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_runtime_imports_neither_torch_nor_the_exporter():
    """CLI -> pipeline -> plan/runtime/graph cache; the exporter only lazily, on a cache miss."""
    code = (
        "import sys, dmv_fast.cli, dmv_fast.pipeline, dmv_fast.plan, dmv_fast.runtime, "
        "dmv_fast.models, dmv_fast.encode, dmv_fast.record, dmv_fast.frames;"
        "bad = [m for m in ('torch', 'dmv_fast_export', 'pytorch_pretrained_biggan', "
        "'dmv_fast.bench') if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"the runtime imports {out}"


def test_exporter_uses_only_public_names_of_the_runtime():
    """The export package reaches the runtime through its public API (no ``_private``)."""
    offenders = []
    for path in (ROOT / "export" / "dmv_fast_export").glob("*.py"):
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dmv_fast"):
                if node.module.startswith("dmv_fast_export"):
                    continue
                for alias in node.names:
                    if alias.name.startswith("_"):
                        offenders.append(f"{path.name}: from {node.module} import {alias.name}")
                    aliases[alias.asname or alias.name] = node.module
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
            ):
                offenders.append(f"{path.name}: {node.value.id}.{node.attr}")
    assert not offenders, offenders


def test_no_import_cycle_between_runtime_modules():
    """Module-level imports inside dmv_fast form no cycle (lazy imports inside functions are
    how the few upward calls are made)."""
    graph: dict[str, set[str]] = {}
    pkg = ROOT / "dmv_fast"
    for path in pkg.rglob("*.py"):
        name = "dmv_fast." + path.relative_to(pkg).with_suffix("").as_posix().replace("/", ".")
        name = name.removesuffix(".__init__")
        deps = set()
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dmv_fast."):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("dmv_fast."))
        graph[name] = deps
    seen: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state = seen.get(node)
        if state == 1:
            raise AssertionError("import cycle: " + " -> ".join([*stack, node]))
        if state == 2:
            return
        seen[node] = 1
        for dep in graph.get(node, ()):
            visit(dep, [*stack, node])
        seen[node] = 2

    for module in graph:
        visit(module, [])
