"""The layer rule, read from the AST of every module (function-level and TYPE_CHECKING imports
count), no import cycles between files, and no code module over 500 lines.

    core (auditlens/*.py, backends, judges)  <-  methods (diffing, probes, adversary, behaviour)
        <-  testbed data  <-  audit  <-  agent  <-  testbed bench / CLI

``reports`` imports only itself (and ``auditlens.errors``); methods may import its schema
(``findings``, ``sections``, ``evidence``) but no other method. Nothing imports the
``auditlens`` facade (``auditlens/__init__.py``, the lazy public entry points).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"diffing": "diffing", "probes": "probes", "adversary": "adversary", "reports": "reports"}
"""Root folders installed as ``auditlens.<name>`` (setuptools package-dir)."""
METHODS = ("diffing", "probes", "adversary", "behaviour")
REPORT_SCHEMA = {"auditlens.reports.findings", "auditlens.reports.sections"}
REPORT_SCHEMA |= {"auditlens.reports.evidence", "auditlens.reports"}
MAX_LINES = 500
EXEMPT_FROM_SIZE = ("auditlens/testbed/_families_",)
"""Task-template data modules (string templates, not code paths)."""

ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "reports": {"reports"},
    "method": {"core", "reports-schema", "method"},  # its own package only (checked below)
    "testbed": {"core", "method", "reports-schema", "testbed"},
    "audit": {"core", "method", "reports-schema", "reports", "testbed", "audit"},
    "agent": {"core", "method", "reports-schema", "reports", "testbed", "audit", "agent"},
    "bench": {"core", "method", "reports-schema", "reports", "testbed", "audit", "agent", "bench"},
    "cli": {
        "core",
        "method",
        "reports-schema",
        "reports",
        "testbed",
        "audit",
        "agent",
        "bench",
        "cli",
    },
    "facade": {"core", "method", "reports-schema", "reports", "testbed", "audit", "agent"},
}


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted((ROOT / "auditlens").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for folder, name in MAPPED.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            out[".".join(("auditlens", name, *parts))] = path
    return out


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


@cache
def imports_of(module: str) -> frozenset[str]:
    """Every ``auditlens`` module a module imports, at any depth of its AST."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    package = module if _is_package(module) else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from pkg import mod`` depends on pkg.mod; ``from pkg import name`` on pkg
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if not name.startswith("auditlens"):
                continue
            # the longest known module that the name refers to
            while name and name not in MODULES:
                name = name.rsplit(".", 1)[0] if "." in name else ""
            if name and name != module:
                found.add(name)
    return frozenset(found)


def layer(module: str) -> str:
    parts = module.split(".")
    if module == "auditlens":
        return "facade"
    second = parts[1]
    if second == "reports":
        return "reports"
    if second in METHODS:
        return "method"
    if second == "testbed":
        return "bench" if len(parts) > 2 and parts[2] in ("bench", "cli") else "testbed"
    if second in ("audit", "agent", "cli"):
        return second
    return "core"


def _target_layer(source: str, target: str) -> str:
    kind = layer(target)
    if kind == "reports" and target in REPORT_SCHEMA and layer(source) != "reports":
        return "reports-schema"
    return kind


def test_every_module_is_classified() -> None:
    assert len(MODULES) > 80
    assert {layer(m) for m in MODULES} >= {"core", "reports", "method", "audit", "agent", "cli"}


def test_layer_rule() -> None:
    problems = []
    for module in MODULES:
        source = layer(module)
        for target in sorted(imports_of(module)):
            if source == "reports" and target == "auditlens.errors":
                continue
            kind = _target_layer(module, target)
            if kind not in ALLOWED[source]:
                problems.append(f"{module} ({source}) imports {target} ({kind})")
            elif kind == source == "method" and target.split(".")[1] != module.split(".")[1]:
                problems.append(f"{module} imports another method: {target}")
    assert not problems, "\n".join(problems)


def test_no_import_cycles_between_files() -> None:
    graph = {m: sorted(imports_of(m)) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


def test_layering_check_catches_function_level_imports(tmp_path: Path) -> None:
    """The check reads imports inside functions and TYPE_CHECKING blocks, not only the top."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from auditlens.testbed import bench\n"
        "def f():\n    from auditlens.agent.workspace import Workspace\n"
    )
    path = tmp_path / "fake.py"
    path.write_text(source)
    MODULES["auditlens.fake_core_module"] = path
    try:
        imports_of.cache_clear()
        found = imports_of("auditlens.fake_core_module")
    finally:
        del MODULES["auditlens.fake_core_module"]
        imports_of.cache_clear()
    assert found == {"auditlens.testbed.bench", "auditlens.agent.workspace"}


def test_nothing_imports_the_facade() -> None:
    offenders = [m for m in MODULES if "auditlens" in imports_of(m)]
    assert not offenders, offenders


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_code_module_over_500_lines(module: str) -> None:
    path = MODULES[module]
    relative = str(path.relative_to(ROOT))
    if relative.startswith(EXEMPT_FROM_SIZE):
        return
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{relative} has {n} lines (limit {MAX_LINES})"


def test_method_packages_export_only_what_users_call() -> None:
    """Each method package's ``__all__`` is small and names only public objects."""
    import importlib

    for name in METHODS:
        module = importlib.import_module(f"auditlens.{name}")
        exported = list(module.__all__)
        assert len(exported) <= 24, f"auditlens.{name} exports {len(exported)} names"
        assert all(not e.startswith("_") for e in exported)
        missing = [e for e in exported if not hasattr(module, e)]
        assert not missing, missing


def _edges() -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for m in MODULES:
        out[m] |= imports_of(m)
    return out


def test_audit_steps_are_thin_adapters() -> None:
    """Each audit step builds settings and calls its methods' run and evidence: short files."""
    steps = [m for m in MODULES if m.startswith("auditlens.audit.steps.")]
    assert {s.rsplit(".", 1)[1] for s in steps} >= {
        "layers", "diffing", "probes", "behaviour", "adversary"
    }  # fmt: skip
    for module in steps:
        n = len(MODULES[module].read_text(encoding="utf-8").splitlines())
        assert n <= 120, f"{module} has {n} lines: method logic belongs in the method package"
    from auditlens.audit.steps import default_steps

    names = [step.name for step in default_steps()]
    assert names == [
        "layers",
        "diffing",
        "concern",
        "discovery",
        "probes",
        "behaviour",
        "adversary",
    ]


def test_one_version_number() -> None:
    import tomllib

    import auditlens

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert auditlens.__version__ == declared  # the step and artifact keys hash this version
