"""Factories the shared fixtures hand to tests (tests/conftest.py and the folders' conftests): a test
asks for the factory and makes what it needs, instead of re-defining a shared fixture's name."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class ToolsDirFactory:
    """Private tools directories under a test's temporary directory.

    `make_tools_dir("echo", "print")` copies those bundled tools; `built=["hostile"]` copies
    components that only tests use (tests/components); `wasm={"nap": bytes}` writes components made
    in the test (tests/wat_tools.py); `policies={"echo": 'workspace = "ro"'}` writes `echo.policy.toml`
    beside them. Each call makes a new directory (`name`, then `name-2`...).
    """

    def __init__(self, root: Path, bundled: Callable[[], Path], built: Callable[[], Path]) -> None:
        self._root = root
        self._bundled = bundled  # called only when a bundled tool is asked for: it builds them
        self._built = built

    def __call__(
        self,
        *bundled: str,
        built: Sequence[str] = (),
        wasm: Mapping[str, bytes] | None = None,
        policies: Mapping[str, str] | None = None,
        name: str = "tools",
    ) -> Path:
        directory = self._new_directory(name)
        for tool in bundled:
            shutil.copy2(self._bundled() / f"{tool}.wasm", directory / f"{tool}.wasm")
        for tool in built:
            shutil.copy2(self._built() / f"{tool}.wasm", directory / f"{tool}.wasm")
        for tool, component in (wasm or {}).items():
            (directory / f"{tool}.wasm").write_bytes(component)
        for tool, policy in (policies or {}).items():
            (directory / f"{tool}.policy.toml").write_text(policy)
        return directory

    def _new_directory(self, name: str) -> Path:
        directory, number = self._root / name, 1
        while directory.exists():
            number += 1
            directory = self._root / f"{name}-{number}"
        directory.mkdir(parents=True)
        return directory
