"""Builds tool sources into `.wasm` components, publishing each by atomic rename.

A source directory holds either `app.py` (Python, built with componentize-py) or
`tool.js` (JavaScript, built with componentize-js), and optionally:

* `component.toml`: `wit = "<dir, relative to the repository>"` and `world = "<name>"`
  to target another world than `llama-agent:tool/plugin` (`wit = "wit/v0.1"` for the 0.1
  contract); `pip = ["pkg==1.0"]` for pure-Python packages to bundle into a Python tool;
  `paths = ["../shared"]` for directories of Python modules it imports, relative to the
  tool's own directory (the bundled workspace tools share one this way);
* `policy.toml`: the grants the tool ships with, published as `NAME.policy.toml`
  beside `NAME.wasm` (see docs/security.md).
"""

from __future__ import annotations

import hashlib
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
from typing import Literal

from llama_agent.config import REPO_ROOT
from llama_agent.runtime.tools.policy import POLICY_SUFFIX

log = logging.getLogger(__name__)

COMPONENT_SOURCES = REPO_ROOT / "components"
JS_BUILDER = REPO_ROOT / "build-support" / "js"
PIP_CACHE = REPO_ROOT / "build" / "pip-vendor"
SOURCE_FILES = {"python": "app.py", "js": "tool.js"}

Language = Literal["python", "js"]


class BuildError(Exception):
    pass


@dataclass(frozen=True)
class ComponentSource:
    directory: Path
    language: Language
    wit_dir: Path
    world: str
    pip: tuple[str, ...] = ()
    paths: tuple[Path, ...] = ()

    @property
    def name(self) -> str:
        return self.directory.name

    @classmethod
    def read(cls, directory: Path) -> ComponentSource:
        language = _language(directory)
        manifest_path = directory / "component.toml"
        try:
            manifest = tomllib.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        except tomllib.TOMLDecodeError as error:
            raise BuildError(f"{manifest_path}: {error}") from error
        paths = tuple((directory / path).resolve() for path in manifest.get("paths", ()))
        missing = [path for path in paths if not path.is_dir()]
        if missing:
            raise BuildError(f"{manifest_path}: `paths` names no directory at {missing[0]}")
        return cls(
            directory=directory.resolve(),
            language=language,
            wit_dir=REPO_ROOT / manifest.get("wit", "wit"),
            world=manifest.get("world", "plugin"),
            pip=tuple(manifest.get("pip", ())),
            paths=paths,
        )

    def inputs(self) -> list[Path]:
        skipped = {"__pycache__", "node_modules"}
        files = [
            p
            for root in (self.directory, *self.paths)
            for p in root.rglob("*")
            if p.is_file() and not skipped & set(p.parts)
        ]
        return files + sorted(self.wit_dir.glob("*.wit"))


def _language(directory: Path) -> Language:
    if (directory / SOURCE_FILES["python"]).is_file():
        return "python"
    if (directory / SOURCE_FILES["js"]).is_file():
        return "js"
    raise BuildError(f"{directory}: no app.py (Python) or tool.js (JavaScript) to build")


def source_directories(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if any((p / f).is_file() for f in SOURCE_FILES.values()))


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
        log.info("building %s", source.directory)
        command = (
            _python_command(source, staged) if source.language == "python" else _js_command(source, staged)
        )
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BuildError(f"building {source.directory} failed:\n{done.stderr or done.stdout}")
        _publish_policy(source, out_dir, Path(scratch))
        os.replace(staged, output)
    log.info("built %s", output)
    return output


def build_all(directories: list[Path], out_dir: Path, force: bool = False) -> list[Path]:
    sources = [ComponentSource.read(d) for d in directories]
    if any(source.language == "js" for source in sources):
        ensure_js_builder()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(lambda s: build_one(s, out_dir, force), sources))


def _python_command(source: ComponentSource, staged: Path) -> list[str]:
    paths = ["-p", str(source.directory)]
    for shared in source.paths:
        paths += ["-p", str(shared)]
    if source.pip:
        paths += ["-p", str(_vendored(source.pip))]
    return [
        _tool_beside_python("componentize-py"),
        *("-d", str(source.wit_dir), "-w", source.world, "componentize"),
        *paths,
        *("app", "-o", str(staged)),
    ]


def _js_command(source: ComponentSource, staged: Path) -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise BuildError("building a JavaScript tool needs Node.js (node) on PATH")
    script = JS_BUILDER / "componentize.mjs"
    return [
        node,
        str(script),
        str(source.directory / "tool.js"),
        str(source.wit_dir),
        source.world,
        str(staged),
    ]


def ensure_js_builder() -> None:
    """Install componentize-js from the npm registry, once, at the versions in package-lock.json.

    `npm ci`, which never rewrites the lock: a build must not change a file of the checkout.
    """
    if (JS_BUILDER / "node_modules" / "@bytecodealliance" / "componentize-js").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError("building a JavaScript tool needs npm on PATH")
    log.info("installing the JavaScript tool builder into %s", JS_BUILDER)
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=JS_BUILDER,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BuildError(f"npm ci in {JS_BUILDER} failed:\n{done.stderr}")


def _vendored(requirements: tuple[str, ...]) -> Path:
    """Pure-Python packages installed into a directory of their own, keyed by the requirement list."""
    key = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:16]
    target = PIP_CACHE / key
    if target.is_dir():
        return target
    PIP_CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=PIP_CACHE, prefix=".partial-"))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(staging)]
    done = subprocess.run([*command, *requirements], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"pip could not install {', '.join(requirements)}:\n{done.stderr}")
    try:
        os.replace(staging, target)
    except OSError:  # another build got there first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _publish_policy(source: ComponentSource, out_dir: Path, scratch: Path) -> None:
    """The tool's bundled grants go in place before the tool itself, so it never runs without them."""
    policy = source.directory / "policy.toml"
    target = out_dir / f"{source.name}{POLICY_SUFFIX}"
    if policy.exists():
        staged = scratch / "policy.toml"
        shutil.copyfile(policy, staged)
        os.replace(staged, target)


def _tool_beside_python(name: str) -> str:
    beside_python = Path(sys.executable).with_name(name)
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if not found:
        raise BuildError(f"{name} is not installed (pip install {name})")
    return found
