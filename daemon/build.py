"""Builds tool sources into `.wasm` components, publishing each by atomic rename.

A source directory holds `app.py` (the module componentize-py wraps) and, if it
targets another world than `llama-agent:tool/plugin`, a `component.toml` with
`wit = "<dir relative to the repository>"` and `world = "<name>"`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from daemon.config import REPO_ROOT

log = logging.getLogger(__name__)

COMPONENT_SOURCES = REPO_ROOT / "components"


class BuildError(Exception):
    pass


@dataclass(frozen=True)
class ComponentSource:
    directory: Path
    wit_dir: Path
    world: str
    module: str = "app"

    @property
    def name(self) -> str:
        return self.directory.name

    @classmethod
    def read(cls, directory: Path) -> ComponentSource:
        if not (directory / "app.py").is_file():
            raise BuildError(f"{directory}: no app.py (only Python tools can be built so far)")
        manifest_path = directory / "component.toml"
        manifest = tomllib.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        return cls(
            directory=directory,
            wit_dir=REPO_ROOT / manifest.get("wit", "wit"),
            world=manifest.get("world", "plugin"),
        )

    def inputs(self) -> list[Path]:
        files = [p for p in self.directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        return files + sorted(self.wit_dir.glob("*.wit"))


def source_directories(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "app.py").is_file())


def is_up_to_date(source: ComponentSource, output: Path) -> bool:
    if not output.exists():
        return False
    built = output.stat().st_mtime
    return all(path.stat().st_mtime <= built for path in source.inputs())


def build_one(source: ComponentSource, out_dir: Path, force: bool = False) -> Path:
    output = out_dir / f"{source.name}.wasm"
    if not force and is_up_to_date(source, output):
        log.info("%s is up to date", output)
        return output
    out_dir.mkdir(parents=True, exist_ok=True)
    # Build beside the destination, then rename: a watcher never sees half a file.
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as scratch:
        staged = Path(scratch) / "component.wasm"
        command = [
            _componentize_py(),
            "-d", str(source.wit_dir),
            "-w", source.world,
            "componentize",
            "-p", str(source.directory),
            source.module,
            "-o", str(staged),
        ]  # fmt: skip
        log.info("building %s", source.directory)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BuildError(f"building {source.directory} failed:\n{done.stderr or done.stdout}")
        os.replace(staged, output)
    log.info("built %s", output)
    return output


def build_all(directories: list[Path], out_dir: Path, force: bool = False) -> list[Path]:
    sources = [ComponentSource.read(d) for d in directories]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(lambda s: build_one(s, out_dir, force), sources))


def _componentize_py() -> str:
    beside_python = Path(sys.executable).with_name("componentize-py")
    found = str(beside_python) if beside_python.exists() else shutil.which("componentize-py")
    if not found:
        raise BuildError("componentize-py is not installed (pip install componentize-py)")
    return found
