"""The layout the README describes is the code's: one subpackage per stage, module sizes, and
imports that go one way (function-level imports counted like any other)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"dmv_fast": ROOT / "dmv_fast", "dmv_fast_export": ROOT / "export" / "dmv_fast_export"}
MAX_LINES = 550
#: The stages of the data flow, each a subpackage of dmv_fast (plus the benchmark toolkit).
STAGES = ("settings", "audio", "vectors", "model", "video", "render", "live", "cli")
MAX_TOP_LEVEL = 6


def _modules() -> list[Path]:
    return sorted(
        p for pkg in PACKAGES.values() for p in pkg.rglob("*.py") if p.name != "__main__.py"
    )


def _name(path: Path) -> str:
    for package, base in PACKAGES.items():
        if path.is_relative_to(base):
            parts = [package, *path.relative_to(base).with_suffix("").parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise AssertionError(path)


FILES = {_name(p): p for p in _modules()}


def _imports(module: str) -> tuple[set[str], list[str]]:
    """The project's files ``module`` imports (any import, anywhere in the file), and the
    private names it imports from other modules."""
    path = FILES[module]
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    private: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                parts = parts[: len(parts) - node.level + (1 if is_package else 0)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.append(full if full in FILES else base)
                private_name = alias.name.startswith("_") and not alias.name.startswith("__")
                if private_name and base in FILES and base != module:
                    private.append(f"{module} imports {base}.{alias.name}")
        for target in targets:
            while target and target not in FILES:
                target = target.rpartition(".")[0]
            if target and target != module and not module.startswith(target + "."):
                found.add(target)
    return found, private


GRAPH = {module: _imports(module)[0] for module in FILES}


def _architecture_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Architecture\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, "README.md has no '## Architecture' section"
    return match.group(1)


def test_readme_architecture_lists_every_module():
    section = _architecture_section()
    listed = set(re.findall(r"`((?:dmv_fast|export)/[\w/]+\.py)`", section))
    listed = {name for name in listed if not name.endswith("__init__.py")}
    actual = {p.relative_to(ROOT).as_posix() for p in _modules() if p.name != "__init__.py"}
    assert not actual - listed, f"modules missing from the README: {sorted(actual - listed)}"
    assert not listed - actual, f"README lists modules that do not exist: {sorted(listed - actual)}"


def test_readme_draws_the_flow_through_every_stage():
    drawing = re.search(r"```\n(.*?)```", _architecture_section(), flags=re.S)
    assert drawing, "the Architecture section has no drawing of the flow"
    missing = [s for s in STAGES if f"{s}/" not in drawing.group(1)]
    assert not missing, f"the drawing does not show the stages {missing}"


def test_one_subpackage_per_stage_and_a_small_top_level():
    pkg = PACKAGES["dmv_fast"]
    subpackages = {p.parent.name for p in pkg.glob("*/__init__.py")}
    assert set(STAGES) <= subpackages, f"missing stages: {set(STAGES) - subpackages}"
    top = sorted(p.name for p in pkg.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, f"too many modules at the top of dmv_fast/: {top}"


def test_no_module_is_over_the_size_limit():
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in _modules()}
    big = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_no_import_cycle_with_function_level_imports_counted():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in GRAPH[node]:
            if dep not in index:
                connect(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in GRAPH:
        if module not in index:
            connect(module)
    assert not cycles, f"import cycles: {cycles}"


def test_no_private_name_is_imported_across_modules():
    private = [line for module in FILES for line in _imports(module)[1]]
    assert not private, private


def test_the_exporter_is_reached_through_one_seam():
    """Only the graph cache imports the export package, and the export package never imports
    the graph cache (it is given the destination path)."""
    importers = sorted(
        m
        for m, deps in GRAPH.items()
        if m.startswith("dmv_fast.")
        and not m.startswith("dmv_fast.bench")  # the benchmarks run torch on purpose
        and any(d.startswith("dmv_fast_export") for d in deps)
    )
    assert importers == ["dmv_fast.model.cache"]
    exporter = [m for m in GRAPH if m.startswith("dmv_fast_export")]
    assert not [m for m in exporter if "dmv_fast.model.cache" in GRAPH[m]]


def test_runtime_imports_neither_torch_nor_the_exporter():
    """Importing every runtime module loads no torch and no export package."""
    runtime = sorted(
        m for m in FILES if m.startswith("dmv_fast.") and not m.startswith("dmv_fast.bench")
    )
    code = (
        f"import importlib, sys; [importlib.import_module(m) for m in {runtime!r}];"
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
    for path in PACKAGES["dmv_fast_export"].glob("*.py"):
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dmv_fast"):
                if node.module.startswith("dmv_fast_export"):
                    continue
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
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


def test_choices_and_defaults_are_written_once():
    """Only the settings subpackage lists choices: no other module spells a choice tuple."""
    spelled = re.compile(r"\(\s*\"(?:auto|x264|stretch|ultrafast|fp32)\"\s*,\s*\"")
    offenders = [
        FILES[m].relative_to(ROOT).as_posix()
        for m in FILES
        if m.startswith("dmv_fast.")
        and not m.startswith(("dmv_fast.settings", "dmv_fast.bench"))
        and spelled.search(FILES[m].read_text())
    ]
    assert not offenders, f"choice lists spelled outside dmv_fast/settings: {offenders}"
