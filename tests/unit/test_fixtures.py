"""The tests' fixtures: no test module re-defines a fixture that a conftest above it defines.

A module's fixture of the same name silently replaces the shared one for that module's tests, so
a reader (or a helper written for the shared fixture) gets something else than the name says.
Such a fixture takes a name of its own, or is made with a shared factory (tests/factories.py).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from llama_agent.config import REPO_ROOT

from tests.factories import ToolsDirFactory

TESTS = REPO_ROOT / "tests"
SKIPPED = {"components", "mcp_inspector", "__pycache__"}


@dataclass(frozen=True)
class Fixture:
    name: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}: {self.name}"


def is_fixture_decorator(decorator: ast.expr) -> bool:
    """`@pytest.fixture`, `@pytest.fixture(...)`, `@pytest_asyncio.fixture(...)`, `@fixture`."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(target, ast.Attribute):
        return target.attr == "fixture"
    return isinstance(target, ast.Name) and target.id == "fixture"


def fixture_name(function: ast.FunctionDef | ast.AsyncFunctionDef, decorator: ast.expr) -> str:
    """The name tests ask for: the function's, unless the decorator says `name=`."""
    if isinstance(decorator, ast.Call):
        for keyword in decorator.keywords:
            if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                return str(keyword.value.value)
    return function.name


def fixtures_in(path: Path) -> list[Fixture]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                if is_fixture_decorator(decorator):
                    found.append(Fixture(fixture_name(node, decorator), path, node.lineno))
    return found


def python_files(pattern: str) -> list[Path]:
    return sorted(path for path in TESTS.rglob(pattern) if not SKIPPED & set(path.relative_to(TESTS).parts))


def conftests_above(path: Path) -> list[Path]:
    """The conftest.py files whose fixtures `path` sees: in its folder and every folder up to tests/."""
    folders = [path.parent, *path.parent.parents]
    return [
        folder / "conftest.py"
        for folder in folders
        if folder.is_relative_to(TESTS)
        and (folder / "conftest.py").exists()
        and folder / "conftest.py" != path
    ]


def shadowed(fixtures: list[Fixture], location: Path) -> list[tuple[Fixture, Fixture]]:
    """Each of `fixtures` (a module's, at `location`) that a conftest above it also defines, with
    the conftest's."""
    shared = {f.name: f for conftest in conftests_above(location) for f in fixtures_in(conftest)}
    return [(fixture, shared[fixture.name]) for fixture in fixtures if fixture.name in shared]


def test_no_test_module_or_conftest_redefines_a_shared_fixture() -> None:
    modules = python_files("test_*.py") + python_files("conftest.py")
    assert len(modules) > 50  # the walk found the tests
    clashes = [clash for module in modules for clash in shadowed(fixtures_in(module), module)]
    assert clashes == [], (
        "fixtures re-defined under a shared fixture's name: give each a name of its own, or make "
        "it with a shared factory (tests/factories.py):\n"
        + "\n".join(f"{fixture} shadows {shared}" for fixture, shared in clashes)
    )


def test_the_check_finds_a_fixture_that_shadows_a_shared_one(tmp_path: Path) -> None:
    """On a module in tests/e2e that re-defines `tools_dir` (tests/e2e/conftest.py's) and, under
    another function name, `cache_dir` (tests/conftest.py's), and has one of its own."""
    example = tmp_path / "test_example.py"
    example.write_text(
        "import pytest\n"
        "@pytest.fixture\ndef tools_dir(tmp_path): return tmp_path\n"
        "@pytest.fixture(name='cache_dir')\ndef my_cache(tmp_path): return tmp_path\n"
        "@pytest.fixture(scope='module')\ndef my_own(): return 1\n"
    )
    fixtures = fixtures_in(example)
    assert [fixture.name for fixture in fixtures] == ["tools_dir", "cache_dir", "my_own"]
    clashes = shadowed(fixtures, TESTS / "e2e" / "test_example.py")
    assert [(fixture.name, shared.path) for fixture, shared in clashes] == [
        ("tools_dir", TESTS / "e2e" / "conftest.py"),
        ("cache_dir", TESTS / "conftest.py"),
    ]


def test_make_tools_dir_copies_writes_and_numbers_its_directories(make_tools_dir: ToolsDirFactory) -> None:
    made = make_tools_dir(
        "echo", built=["hostile"], wasm={"tiny": b"\0asm"}, policies={"echo": 'workspace = "ro"\n'}
    )
    assert sorted(path.name for path in made.iterdir()) == [
        "echo.policy.toml",
        "echo.wasm",
        "hostile.wasm",
        "tiny.wasm",
    ]
    assert (made / "tiny.wasm").read_bytes() == b"\0asm"
    assert (made / "echo.wasm").read_bytes()[:4] == b"\0asm"  # a copy of the bundled component
    again = make_tools_dir()
    assert (made.name, again.name, list(again.iterdir())) == ("tools", "tools-2", [])
