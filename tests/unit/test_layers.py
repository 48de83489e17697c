"""The daemon's layers import one way only: every module under daemon/llama_agent, read with `ast`.

Layers, top to bottom: cli → faces → core, config → services → runtime → common. A module may
import its own layer or any below it, never one above. `__main__` at the package root is the entry
point: it may import anything, and nothing imports it. The root `__init__` holds the package's
name and version, which every layer may read: so it imports nothing of the package.

Within a layer:
- runtime: its subsystems are wasm (the Wasm host and its workers), models (the model backends),
  tools (tool metadata, schemas, policy), storage (files, atomic writes, signing, digests) and
  telemetry (metrics, traces, structured and audit logs). wasm may import tools and storage;
  models and tools may import storage; wasm, models and tools may import telemetry; storage and
  telemetry import no other subsystem.
- faces: acp.py, mcp.py, lsp/ and network/ are the faces; each may import wire/ and stdio.py
  (shared by every face), never another face, except that network/ (HTTP and WebSocket: the
  service) carries lsp/ and mcp.py over the network, so it may import those two. wire/ and
  stdio.py import no face.
- services: agent/, tools/, consent/, models.py, sessions.py... import each other, as they do
  today (agent → tools and models; tools → consent; sessions → agent, tools, consent), but never
  in a cycle.

Every import counts: at a module's top, inside a function, or only under `TYPE_CHECKING` (a type
from a layer above is a dependency on that layer all the same).
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from llama_agent.config import REPO_ROOT

PACKAGE = "llama_agent"
PACKAGE_DIR = REPO_ROOT / "daemon" / PACKAGE
ENTRY = f"{PACKAGE}.__main__"
LAYERS = ("common", "runtime", "services", "core, config", "faces", "cli")  # bottom to top
LAYER_OF_TOP_LEVEL = {
    "common": "common",
    "runtime": "runtime",
    "services": "services",
    "core": "core, config",
    "config": "core, config",
    "faces": "faces",
    "cli": "cli",
}
RUNTIME_MAY_IMPORT = {
    "wasm": {"tools", "storage", "telemetry"},
    "models": {"storage", "telemetry"},
    "tools": {"storage", "telemetry"},
    "storage": set(),
    "telemetry": set(),
}
FACES = {"acp", "mcp", "lsp", "network"}
# The faces another face may import: the network face carries the LSP and MCP faces.
FACES_MAY_IMPORT = {"network": {"lsp", "mcp"}}
SHARED_BY_FACES = {"wire", "stdio"}
LAYER_ORDER = " → ".join(reversed(LAYERS))

# Upward imports found when this check was written, that belong to work in progress elsewhere: each
# is to go (this list only ever shrinks; an entry that no longer exists fails a test below). The tool
# registry reads where the bundled tools and the config directory are from config.py: the
# composition root (core.py) is to hand the registry its own typed section of the config instead.
KNOWN_UPWARD: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    imported: str  # module name, resolved: `from x import y` names x.y when that is a module
    path: Path
    line: int

    @property
    def where(self) -> str:
        return f"{_shown(self.path)}:{self.line}"


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)


def modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Every module of the package, by name."""
    found: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(known: Mapping[str, Path], sources: Mapping[str, str] | None = None) -> Iterator[Import]:
    """Every import of a module of the package by a module of the package. `sources`: the modules'
    text (read from their paths when not given)."""
    for importer, path in known.items():
        source = sources[importer] if sources is not None else path.read_text(encoding="utf-8")
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(source, str(path))):
            for imported in _targets(node, importer, is_package, known):
                yield Import(importer, imported, path, getattr(node, "lineno", 0))


def _targets(node: ast.AST, importer: str, is_package: bool, known: Mapping[str, Path]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if _inside(alias.name):
                yield _nearest_module(alias.name, known)
    elif isinstance(node, ast.ImportFrom):
        base = _absolute(node, importer, is_package)
        if not _inside(base):
            return
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            yield submodule if submodule in known else _nearest_module(base, known)


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The module a `from ... import` reads from, relative imports resolved."""
    if not node.level:
        return node.module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _inside(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _nearest_module(name: str, known: Mapping[str, Path]) -> str:
    """`name`, or the nearest package above it that is a module of the package."""
    parts = name.split(".")
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts) or name


# -- where a module stands ------------------------------------------------------------------------


def layer(module: str) -> str | None:
    """The layer of `module`; None for the package root and its entry point."""
    parts = module.split(".")
    if len(parts) < 2 or module == ENTRY:
        return None
    return LAYER_OF_TOP_LEVEL.get(parts[1], "unknown")


def unit(module: str) -> str | None:
    """The part of its layer `module` is in: a runtime subsystem, a face, a service (the folder or
    module right under the layer's package); None for the layer's own package."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 else None


# -- the rules --------------------------------------------------------------------------------------


def problems(known: Mapping[str, Path], found: list[Import]) -> list[str]:
    """Every module out of place and every import that breaks a rule, each saying how to fix it."""
    said = [problem for name, path in known.items() if (problem := placement_problem(name, path))]
    said += [problem for edge in found if (problem := edge_problem(edge)) is not None]
    return said + cycle_problems(found, "services")


def placement_problem(module: str, path: Path) -> str | None:
    """Why `module` stands in no place the rules know, if it does not."""
    head = f"{_shown(path)}: {module}"
    where = layer(module)
    if where == "unknown":
        return (
            f"{head} is in no layer. Put it in one of {', '.join(LAYERS)}, or add its folder to "
            "LAYER_OF_TOP_LEVEL in tests/unit/test_layers.py (and to the README's layout)."
        )
    part = unit(module)
    if where == "runtime" and part is not None and part not in RUNTIME_MAY_IMPORT:
        return (
            f"{head}: runtime/{part} is no subsystem of the runtime. Put it in one of "
            f"{', '.join(sorted(RUNTIME_MAY_IMPORT))}, or add it to RUNTIME_MAY_IMPORT in "
            "tests/unit/test_layers.py, saying what it may import."
        )
    if where == "faces" and part is not None and part not in FACES | SHARED_BY_FACES:
        return (
            f"{head}: faces/{part} is neither a face ({', '.join(sorted(FACES))}) nor shared by them "
            f"({', '.join(sorted(SHARED_BY_FACES))}). Add it to FACES or SHARED_BY_FACES in "
            "tests/unit/test_layers.py."
        )
    return None


def edge_problem(edge: Import) -> str | None:
    importer, imported = edge.importer, edge.imported
    head = f"{edge.where}: {importer} imports {imported}"
    if imported == ENTRY:
        return f"{head}: nothing imports the entry point. Import the module that defines what it needs."
    if importer == PACKAGE:
        return (
            f"{head}: the package root holds only the package's name and version, which every layer "
            "reads, so it imports nothing of the package. Import it where it is used."
        )
    above, below = layer(importer), layer(imported)
    if above is None or below is None or "unknown" in (above, below):
        return None  # the entry point, the package root, or a module out of place (said already)
    if LAYERS.index(below) > LAYERS.index(above):
        if (importer, imported) in KNOWN_UPWARD:
            return None
        return (
            f"{head}: {above} may not import {below}, a layer above it ({LAYER_ORDER}: a module "
            f"imports its own layer or one below). Move what it needs from {imported} down into "
            f"{above} or below, or have the layer above pass it in (core.py, the composition root, "
            "builds every service and hands each what it needs)."
        )
    if above == below == "runtime":
        return _runtime_problem(head, unit(importer), unit(imported))
    if above == below == "faces":
        return _faces_problem(head, unit(importer), unit(imported))
    return None


def _runtime_problem(head: str, importer: str | None, imported: str | None) -> str | None:
    if importer is None or imported is None or importer == imported:
        return None
    allowed = RUNTIME_MAY_IMPORT.get(importer)
    if allowed is None or imported in allowed or imported not in RUNTIME_MAY_IMPORT:
        return None  # a subsystem out of place (said already)
    may = " and ".join(f"runtime/{name}" for name in sorted(allowed)) or "no other subsystem"
    return (
        f"{head}: runtime/{importer} may import {may}, not runtime/{imported}. Move what it needs "
        "into runtime/storage (what several subsystems share belongs there), or have its caller "
        "pass it in."
    )


def _faces_problem(head: str, importer: str | None, imported: str | None) -> str | None:
    parts = FACES | SHARED_BY_FACES
    if importer not in parts or imported not in parts or importer == imported or imported in SHARED_BY_FACES:
        return None  # the faces package itself, a part out of place (said already), or allowed
    if imported in FACES_MAY_IMPORT.get(importer, set()):
        return None
    if importer in SHARED_BY_FACES:
        return (
            f"{head}: faces/{importer} is shared by every face and imports none of them. Move what "
            f"it needs from faces/{imported} into faces/wire."
        )
    return (
        f"{head}: one face may not import another (faces/{importer}, faces/{imported}). Move what "
        "both need into faces/wire, which every face shares."
    )


def cycle_problems(found: list[Import], within: str) -> list[str]:
    """Cycles between the parts of the layer `within` (its folders and modules)."""
    edges: dict[str, dict[str, Import]] = {}
    for edge in found:
        if layer(edge.importer) == layer(edge.imported) == within:
            importer, imported = unit(edge.importer), unit(edge.imported)
            if importer is not None and imported is not None and importer != imported:
                edges.setdefault(importer, {}).setdefault(imported, edge)
    said: list[str] = []
    for cycle in _cycles(edges):
        steps = "; ".join(
            f"{edges[a][b].where} ({a} → {b})" for a, b in itertools.pairwise([*cycle, cycle[0]])
        )
        said.append(
            f"{within}: {' → '.join([*cycle, cycle[0]])} import each other in a cycle ({steps}). "
            "Move what they share into one of them (the one the others build on), or below, or "
            "pass a callback instead of importing."
        )
    return said


def _cycles(edges: Mapping[str, Mapping[str, Import]]) -> list[list[str]]:
    """One cycle for each strongly connected group of more than one part (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group: list[str] = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_a_cycle_in(sorted(group), edges) for group in groups]


def _a_cycle_in(group: list[str], edges: Mapping[str, Mapping[str, Import]]) -> list[str]:
    """A path from the group's first part back to itself, within the group."""
    start = group[0]
    paths = [[start]]
    while paths:
        path = paths.pop(0)
        for target in sorted(edges.get(path[-1], {})):
            if target == start:
                return path
            if target in group and target not in path:
                paths.append([*path, target])
    return group


# -- the check ------------------------------------------------------------------------------------


def test_every_import_goes_down_the_layers() -> None:
    known = modules()
    found = list(imports(known))
    assert len(known) > 50 and len(found) > 100, "the package's modules were not read"
    said = problems(known, found)
    assert not said, "imports against the layers (see tests/unit/test_layers.py):\n" + "\n".join(said)


def test_the_known_upward_imports_still_exist() -> None:
    """An upward import on the known list that is gone must leave the list, so it cannot return."""
    found = {(edge.importer, edge.imported) for edge in imports(modules())}
    gone = sorted(KNOWN_UPWARD - found)
    assert not gone, f"fixed: remove {gone} from KNOWN_UPWARD in tests/unit/test_layers.py"


# -- the checker itself, on packages written here -----------------------------------------------------


def check(tree: Mapping[str, str]) -> list[str]:
    """The problems in a package whose modules are `tree` (file path under the package: source)."""
    known: dict[str, Path] = {}
    sources: dict[str, str] = {}
    for file, source in tree.items():
        parts = Path(PACKAGE, file).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        known[name] = PACKAGE_DIR.parent / PACKAGE / file
        sources[name] = source
    return problems(known, list(imports(known, sources)))


BASE = {
    "__init__.py": '__version__ = "1"',
    "__main__.py": "from llama_agent.cli import main",
    "cli/__init__.py": "from llama_agent.faces import acp\nfrom llama_agent import __version__",
    "config.py": "from llama_agent.runtime.models import backend",
    "core.py": "import llama_agent.services.agent.loop",
    "faces/__init__.py": "",
    "faces/acp.py": "from llama_agent.faces.wire import jsonrpc\nfrom llama_agent.core import open_core",
    "faces/mcp.py": "from ..faces import stdio",
    "faces/stdio.py": "",
    "faces/wire/__init__.py": "",
    "faces/wire/jsonrpc.py": "from llama_agent.common import text",
    "services/__init__.py": "",
    "services/agent/__init__.py": "",
    "services/agent/loop.py": "from llama_agent.services.tools import registry",
    "services/tools/__init__.py": "",
    "services/tools/registry.py": "from llama_agent.runtime.wasm.host import WasmHost",
    "runtime/__init__.py": "",
    "runtime/wasm/__init__.py": "",
    "runtime/wasm/host.py": "from llama_agent.runtime.storage.files import read\nfrom . import worker",
    "runtime/wasm/worker.py": "from llama_agent.runtime.tools import limits",
    "runtime/models/__init__.py": "",
    "runtime/models/backend.py": "from llama_agent.runtime.storage import signing",
    "runtime/tools/__init__.py": "",
    "runtime/tools/limits.py": "",
    "runtime/storage/__init__.py": "",
    "runtime/storage/files.py": "",
    "runtime/storage/signing.py": "from .files import read",
    "common/__init__.py": "",
    "common/text.py": "",
}


def test_a_package_that_follows_the_rules_passes() -> None:
    assert check(BASE) == []


@pytest.mark.parametrize(
    ("file", "source", "said"),
    [
        (
            "runtime/tools/limits.py",
            "from llama_agent.services.agent.loop import Agent",
            "limits.py:1: llama_agent.runtime.tools.limits imports llama_agent.services.agent.loop: "
            "runtime may not import services, a layer above it",
        ),
        (
            "services/agent/loop.py",
            "def later():\n    from llama_agent.faces import acp",
            "loop.py:2: llama_agent.services.agent.loop imports llama_agent.faces.acp: services may "
            "not import faces",
        ),
        (
            "common/text.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..runtime.storage import files",
            "text.py:3: llama_agent.common.text imports llama_agent.runtime.storage.files: common "
            "may not import runtime",
        ),
        (
            "services/agent/loop.py",
            "import llama_agent.config",
            "services may not import core, config, a layer above it",
        ),
        (
            "runtime/models/backend.py",
            "from llama_agent.runtime.wasm.host import WasmHost",
            "runtime/models may import runtime/storage and runtime/telemetry, not runtime/wasm",
        ),
        (
            "runtime/storage/signing.py",
            "from llama_agent.runtime.tools import limits",
            "runtime/storage may import no other subsystem, not runtime/tools",
        ),
        (
            "runtime/telemetry/metrics.py",
            "from llama_agent.runtime.storage import files",
            "runtime/telemetry may import no other subsystem, not runtime/storage",
        ),
        (
            "faces/mcp.py",
            "from llama_agent.faces.acp import AcpFace",
            "one face may not import another (faces/mcp, faces/acp)",
        ),
        (
            "faces/network/__init__.py",
            "from llama_agent.faces import mcp\nfrom llama_agent.faces import acp",
            "one face may not import another (faces/network, faces/acp)",
        ),
        (
            "faces/wire/jsonrpc.py",
            "from llama_agent.faces import mcp",
            "faces/wire is shared by every face and imports none of them",
        ),
        ("__init__.py", "from llama_agent.cli import main", "the package root holds only"),
        ("cli/__init__.py", "import llama_agent.__main__", "nothing imports the entry point"),
        ("runtime/cache.py", "", "runtime/cache is no subsystem of the runtime"),
        ("faces/http.py", "", "faces/http is neither a face (acp, lsp, mcp, network) nor shared by them"),
        ("plugins.py", "", "llama_agent.plugins is in no layer"),
    ],
    ids=[
        "upward",
        "upward in a function",
        "upward for types only",
        "upward to a module of the core layer",
        "runtime subsystem",
        "storage imports no subsystem",
        "telemetry imports no subsystem",
        "face to face",
        "the network face to a face it does not carry",
        "shared to a face",
        "root imports",
        "entry imported",
        "unknown subsystem",
        "unknown part of the faces",
        "unknown layer",
    ],
)
def test_what_breaks_a_rule_is_named_with_its_line(file: str, source: str, said: str) -> None:
    found = check({**BASE, file: source})
    assert len(found) == 1 and said in found[0], found


def test_a_cycle_between_services_is_named_with_each_step() -> None:
    tree = {
        **BASE,
        "services/consent/__init__.py": "",
        "services/consent/approvals.py": "from llama_agent.services.agent.loop import Agent",
        "services/tools/registry.py": "from llama_agent.services.consent import approvals",
    }
    [said] = check(tree)
    assert said.startswith("services: agent → tools → consent → agent import each other in a cycle")
    assert "loop.py:1 (agent → tools)" in said and "approvals.py:1 (consent → agent)" in said
