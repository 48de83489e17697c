"""The deployment artefacts in deploy/, checked without Docker or a cluster (none runs here).

- deploy/Dockerfile, read line by line: a build stage and a runtime stage that copies only from it,
  runs as a user other than root, checks /healthz and starts `serve` with flags the CLI takes; what
  it copies from the build context is in the repository and let through by .dockerignore.
- deploy/haproxy.cfg: `haproxy -c` with make load's addresses and with compose's defaults, and the
  settings the fault figures of issue 31 rest on (the checks that take a killed replica out).
- deploy/compose.yaml, parsed: each service has what it needs, the replicas publish nothing,
  healthchecks hit routes the app has, and a replica's stop grace covers the daemon's drain.
- deploy/k8s/*.yaml: kubernetes-validate --strict against a pinned Kubernetes version, then how the
  manifests fit together and fit the image (ports, labels, probes, writable paths).

The app's routes are read from faces/network/app.py with `ast` (building the app needs a running
service). Every check reads files; the slowest, the schemas, takes about a second.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from llama_agent.cli import parse_command_line
from llama_agent.config import REPO_ROOT
from llama_agent.faces.lsp.server import STOP_GRACE_SECONDS
from llama_agent.services.tenants.config import TENANT_KEYS

DEPLOY = REPO_ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
HAPROXY_CFG = DEPLOY / "haproxy.cfg"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
TENANTS_EXAMPLE = DEPLOY / "tenants.example.toml"
APP = REPO_ROOT / "daemon" / "llama_agent" / "faces" / "network" / "app.py"

# The oldest Kubernetes release still supported upstream (December 2026): what validates against it
# validates against the newer ones, whose APIs only add.
KUBERNETES_VERSION = "1.35.0"
# The public routes; /healthz, /readyz and /metrics stay internal.
PUBLIC_ROUTES = {"/lsp", "/mcp"}
# After SIGTERM: STOP_GRACE_SECONDS for the running work, uvicorn's 2 s to close, and a margin.
DRAIN_SECONDS = STOP_GRACE_SECONDS + 2 + 3


def app_routes() -> set[str]:
    """The paths of the Route and WebSocketRoute the service's app is built with."""
    paths = set()
    for node in ast.walk(ast.parse(APP.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"Route", "WebSocketRoute"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            paths.add(node.args[0].value)
    return paths


ROUTES = app_routes()


def test_the_routes_are_read_from_the_app() -> None:
    assert {"/healthz", "/readyz", "/metrics", "/lsp", "/mcp"} <= ROUTES


# -- the Dockerfile ---------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for instruction, arguments in self.instructions if instruction == keyword]

    def one(self, keyword: str) -> str:
        found = self.all(keyword)
        assert len(found) == 1, f"stage {self.name}: {len(found)} {keyword} instructions, expected 1"
        return found[0]


def dockerfile_instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, its arguments) of a Dockerfile: continuation lines joined, comments dropped
    (a comment line inside a continued instruction too, as Docker does)."""
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        if whole:
            keyword, _, arguments = whole.partition(" ")
            yield keyword.upper(), arguments.strip()
    assert not pending.strip(), "the Dockerfile ends inside a continued line"


def dockerfile_stages(text: str) -> list[Stage]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, arguments in dockerfile_instructions(text):
        if keyword == "ARG" and not stages:
            name, _, default = arguments.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            words = [word for word in arguments.split() if not word.startswith("--")]
            base = re.sub(r"\$\{(\w+)\}", lambda match: global_args[match[1]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base, name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, arguments))
    return stages


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form instruction (ENTRYPOINT, CMD, HEALTHCHECK's CMD)."""
    words = json.loads(arguments)
    assert isinstance(words, list) and all(isinstance(word, str) for word in words), arguments
    return words


def copy_flags_and_paths(arguments: str) -> tuple[dict[str, str], list[str], str]:
    words = shlex.split(arguments)
    flags = {}
    for word in words:
        if word.startswith("--"):
            name, _, value = word[2:].partition("=")
            flags[name] = value
    paths = [word for word in words if not word.startswith("--")]
    return flags, paths[:-1], paths[-1]


STAGES = dockerfile_stages(DOCKERFILE.read_text())
BUILD, RUNTIME = next(stage for stage in STAGES if stage.name == "build"), STAGES[-1]


def runtime_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in RUNTIME.all("ENV"):
        for word in shlex.split(arguments):
            name, _, value = word.partition("=")
            env[name] = value
    return env


def image_entrypoint() -> list[str]:
    return exec_form(RUNTIME.one("ENTRYPOINT"))


def image_port() -> int:
    return int(RUNTIME.one("EXPOSE").split("/")[0])


def image_uid() -> int:
    return int(RUNTIME.one("USER").split(":")[0])


def flag(words: list[str], name: str) -> str:
    assert name in words, f"{name} missing from {words}"
    return words[words.index(name) + 1]


def test_the_dockerfile_builds_in_one_stage_and_runs_from_another() -> None:
    assert len(STAGES) >= 2
    assert RUNTIME is not BUILD
    # The venv's interpreter is a link to the base image's: both stages stand on the same one.
    assert RUNTIME.base == BUILD.base
    assert BUILD.base.startswith("python:3.11-") and "bookworm" in BUILD.base


def test_the_build_stage_is_make_runs_set_up_and_seals_the_compile_cache() -> None:
    runs = " ".join(BUILD.all("RUN"))
    assert "make components" in runs  # the Makefile's venv, CMake arguments and tools build
    assert "tools seal --cache-dir /opt/llama-agent/cache" in runs
    # The build fails if the cache was not sealed, or still holds a key that can sign.
    assert "test -s /opt/llama-agent/cache/signing.pub" in runs
    assert "test ! -e /opt/llama-agent/cache/signing.key" in runs


def test_the_runtime_stage_copies_only_from_the_build_stage() -> None:
    copies = RUNTIME.all("COPY") + RUNTIME.all("ADD")
    assert copies
    for arguments in copies:
        flags, _, _ = copy_flags_and_paths(arguments)
        assert flags.get("from") == BUILD.name, f"runtime stage: {arguments}"
    destinations = {copy_flags_and_paths(arguments)[2]: arguments for arguments in copies}
    assert set(destinations) == {".venv", "daemon", "build/tools", "cache"}, "only venv, daemon, tools, cache"
    # The sealed cache stays root's, as every file copied: the daemon cannot write it.
    assert not any("--chown" in arguments for arguments in copies)


def test_the_runtime_stage_runs_as_another_user_than_root() -> None:
    user = RUNTIME.one("USER")
    assert user.split(":")[0] not in {"root", "0"}
    assert image_uid() > 0  # numeric, so that Kubernetes' runAsNonRoot can verify it


def test_the_healthcheck_asks_healthz_on_the_exposed_port() -> None:
    healthcheck = RUNTIME.one("HEALTHCHECK")
    command = exec_form(healthcheck[healthcheck.index("CMD ") + 4 :])
    assert command[0] == "python"  # no curl in the image
    urls = re.findall(r"https?://[^'\" ]+", " ".join(command))
    assert len(urls) == 1
    url = urlsplit(urls[0])
    assert url.path == "/healthz" and url.path in ROUTES
    assert url.port == image_port()


def test_the_entrypoint_is_a_command_line_the_cli_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LLAMA_AGENT_CACHE_DIR", "LLAMA_AGENT_CONFIG_DIR"):
        monkeypatch.setenv(name, runtime_env()[name])
    entrypoint = image_entrypoint()
    default_arguments = exec_form(RUNTIME.one("CMD"))
    assert entrypoint[:2] == ["llama-agent", "serve"]
    config, args = parse_command_line([*entrypoint[1:], *default_arguments])
    assert args.backend == "openai" and config.model.remote is not None
    assert args.listen == f"0.0.0.0:{image_port()}"
    assert str(args.tenants) == "/etc/llama-agent/tenants.toml"
    # The compile cache sealed at build time, verified and never written.
    assert config.locations.cache_read_only
    assert config.locations.cache_dir == Path("/opt/llama-agent/cache")
    assert config.locations.config_dir == Path("/var/lib/llama-agent/config")
    assert runtime_env()["LLAMA_AGENT_CONFINEMENT"] == "required"


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(whether it lets in, the pattern) for each line of .dockerignore, in order."""
    patterns = []
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        admits = line.startswith("!")
        glob = line.lstrip("!").strip("/")
        parts = re.split(r"(\*\*|\*|\?)", glob)
        wildcards = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
        regex = "".join(wildcards.get(part, re.escape(part)) for part in parts)
        patterns.append((admits, re.compile(regex)))
    return patterns


def in_build_context(path: str) -> bool:
    """Whether Docker sends `path` to the builder: the last pattern matching it or a directory
    above it decides, as in Docker's own matching."""
    included = True
    prefixes = ["/".join(PurePosixPath(path).parts[: n + 1]) for n in range(len(PurePosixPath(path).parts))]
    for admits, pattern in dockerignore_patterns():
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            included = admits
    return included


def test_dockerignore_sends_the_sources_and_keeps_the_rest_out() -> None:
    for needed in (
        "pyproject.toml",
        "daemon/llama_agent/__init__.py",
        "components/echo/app.py",
        "wit/tool.wit",
    ):
        assert in_build_context(needed), needed
    for left_out in (".venv/bin/python", "build/tools/echo.wasm", "tests/unit/test_deploy.py", ".git/HEAD"):
        assert not in_build_context(left_out), left_out


def test_every_source_copied_from_the_build_context_is_in_the_repository() -> None:
    copied = 0
    for stage in STAGES:
        for arguments in stage.all("COPY") + stage.all("ADD"):
            flags, sources, _ = copy_flags_and_paths(arguments)
            if "from" in flags:
                continue
            for source in sources:
                assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert in_build_context(source.rstrip("/")), f"COPY {source}: left out by .dockerignore"
                copied += 1
    assert copied >= 5


# -- HAProxy ----------------------------------------------------------------------------------------


def haproxy() -> str | None:
    # Debian puts it in /usr/sbin, off a user's PATH.
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


HAPROXY = haproxy()
needs_haproxy = pytest.mark.skipif(
    HAPROXY is None and not os.environ.get("CI"),
    reason="no haproxy on PATH or in /usr/sbin (make test installs Debian's)",
)
LOOPBACK_ENV = {
    "LISTEN": "127.0.0.1:18080",
    "STATS": "127.0.0.1:18404",
    "REPLICA1": "127.0.0.1:18765",
    "REPLICA2": "127.0.0.1:18766",
}


def haproxy_check(config: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    assert HAPROXY is not None, "haproxy is not installed (make haproxy)"
    # Only PATH from this environment: compose's defaults must come from the file's presetenv.
    environment = {"PATH": os.environ.get("PATH", ""), **env}
    return subprocess.run(
        [HAPROXY, "-c", "-f", str(config)], env=environment, capture_output=True, text=True, timeout=30
    )


@needs_haproxy
@pytest.mark.parametrize("env", [LOOPBACK_ENV, {}], ids=["make-load", "compose-defaults"])
def test_haproxy_accepts_the_configuration(env: Mapping[str, str]) -> None:
    done = haproxy_check(HAPROXY_CFG, env)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_haproxy
def test_haproxy_check_refuses_a_broken_configuration(tmp_path: Path) -> None:
    broken = tmp_path / "haproxy.cfg"
    broken.write_text(HAPROXY_CFG.read_text().replace("balance leastconn", "balance fewest"))
    done = haproxy_check(broken, LOOPBACK_ENV)
    assert done.returncode != 0


def haproxy_sections() -> dict[str, list[str]]:
    """Each section (`frontend agent`, `backend replicas`...) and its lines, comments dropped."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in HAPROXY_CFG.read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if not line[0].isspace():
            current = sections.setdefault(" ".join(line.split()), [])
        else:
            current.append(" ".join(line.split()))
    return sections


def test_haproxy_forwards_only_the_public_routes_to_replicas_checked_on_readyz() -> None:
    sections = haproxy_sections()
    defaults = sections["defaults"]
    assert "mode http" in defaults
    assert any(line.startswith("timeout tunnel") for line in defaults)  # open WebSockets
    frontend = sections["frontend agent"]
    acl = next(line for line in frontend if line.startswith("acl service path "))
    assert set(acl.split()[3:]) == PUBLIC_ROUTES and PUBLIC_ROUTES <= ROUTES
    assert "http-request deny deny_status 404 unless service" in frontend
    backend = sections["backend replicas"]
    assert "balance leastconn" in backend
    check = next(line.split()[-1] for line in backend if line.startswith("option httpchk GET"))
    assert check == "/readyz" and check in ROUTES
    # An MCP session's requests go back to the replica that opened it (its id lives there).
    assert "stick store-response res.hdr(mcp-session-id)" in backend
    assert "stick match req.hdr(mcp-session-id)" in backend
    servers = [line for line in backend if line.startswith("server ")]
    assert [line.split()[2] for line in servers] == ['"${REPLICA1}"', '"${REPLICA2}"']


def test_a_killed_replica_leaves_rotation_within_two_seconds() -> None:
    default_server = next(line for line in haproxy_sections()["backend replicas"] if "default-server" in line)
    words = default_server.split()
    assert "check" in words
    interval = float(flag(words, "inter").removesuffix("s"))
    assert interval * int(flag(words, "fall")) <= 2
    # A draining replica keeps its sessions: they are not cut when its checks fail.
    assert "on-marked-down" not in words


def haproxy_defaults() -> dict[str, str]:
    return {
        line.split()[1]: line.split()[2]
        for line in haproxy_sections()["global"]
        if line.startswith("presetenv ")
    }


# -- compose ----------------------------------------------------------------------------------------


def interpolated(value: Any) -> Any:
    """`value` with compose's ${NAME:-default} replaced by the default (as with nothing set)."""
    if isinstance(value, str):
        return re.sub(r"\$\{\w+:-([^}]*)\}", lambda match: match[1], value)
    if isinstance(value, list):
        return [interpolated(item) for item in value]
    if isinstance(value, dict):
        return {key: interpolated(item) for key, item in value.items()}
    return value


def compose() -> dict[str, Any]:
    document = interpolated(yaml.safe_load(COMPOSE.read_text()))
    assert isinstance(document, dict)
    return document


COMPOSE_DOC = compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE_DOC["services"]
REPLICAS = {name: service for name, service in SERVICES.items() if name.startswith("replica-")}


def seconds(duration: str) -> float:
    """A compose duration: 1m30s, 15s, 500ms."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(number + unit for number, unit in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def mounts(service: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    """Where each volume of a service is mounted: target -> (source, read-only)."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *options = volume.split(":")
        found[target] = (source, "ro" in options)
    return found


def test_compose_has_a_balancer_two_replicas_a_model_server_and_the_cache_job() -> None:
    assert set(SERVICES) == {"balancer", "replica-1", "replica-2", "model", "compile-cache"}
    assert len(REPLICAS) == 2


def test_compose_builds_the_replicas_from_the_dockerfile() -> None:
    for name in [*REPLICAS, "compile-cache"]:
        build = SERVICES[name]["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert context == REPO_ROOT, name
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE, name


def test_compose_replicas_are_checked_on_readyz_and_publish_nothing() -> None:
    for name, replica in REPLICAS.items():
        assert "ports" not in replica, f"{name} publishes a port: /metrics would face the world"
        test = " ".join(replica["healthcheck"]["test"])
        url = urlsplit(re.findall(r"https?://[^'\" ]+", test)[0])
        assert url.path == "/readyz" and url.path in ROUTES
        assert url.port == image_port()


def test_compose_replicas_stop_after_the_daemon_has_drained() -> None:
    for name, replica in REPLICAS.items():
        assert replica.get("stop_signal", "SIGTERM") == "SIGTERM"
        grace = seconds(replica["stop_grace_period"])
        assert grace >= 10 and grace >= DRAIN_SECONDS, f"{name}: {grace} s"


def test_compose_replicas_run_confined_with_their_inputs_read_only() -> None:
    for name, replica in REPLICAS.items():
        assert replica["environment"]["LLAMA_AGENT_CONFINEMENT"] == "required"
        assert replica["read_only"] is True
        volumes = mounts(replica)
        tenants_file = flag(image_entrypoint(), "--tenants")
        assert volumes[tenants_file][1], f"{name}: the tenants file is writable"
        assert volumes["/srv/llama-agent/tools"][1], f"{name}: the tools are writable"
        cache = runtime_env()["LLAMA_AGENT_CACHE_DIR"]
        assert volumes[cache] == ("compile-cache", True), f"{name}: the compile cache is not shared read-only"
        # What the daemon writes lies on a volume (the root file system is read-only).
        state = runtime_env()["LLAMA_AGENT_CONFIG_DIR"]
        assert any(state.startswith(target) and not ro for target, (_, ro) in volumes.items()), name
        for target, (source, _) in volumes.items():
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} (for {target}) is not in deploy/"


def test_compose_cache_job_fills_the_shared_cache_before_the_replicas_start() -> None:
    job = SERVICES["compile-cache"]
    assert mounts(job)[runtime_env()["LLAMA_AGENT_CACHE_DIR"]] == ("compile-cache", False)
    # It loads the tools from the cache as a replica will: verifying, never writing.
    config, _ = parse_command_line([*job["entrypoint"][1:], *job["command"]])
    assert config.locations.cache_read_only
    assert "compile-cache" in COMPOSE_DOC["volumes"]
    for name, replica in REPLICAS.items():
        assert replica["depends_on"]["compile-cache"]["condition"] == "service_completed_successfully", name


def model_address() -> tuple[str, int]:
    command = [str(word) for word in SERVICES["model"]["command"]]
    return "model", int(flag(command, "--port"))


def test_compose_replicas_reach_the_model_server_it_runs() -> None:
    model = SERVICES["model"]
    assert model["image"] == "ghcr.io/ggml-org/llama.cpp:server"
    command = [str(word) for word in model["command"]]
    assert int(flag(command, "--parallel")) == 4
    model_file = PurePosixPath(flag(command, "--model"))
    assert any(
        mounted and model_file.is_relative_to(target) for target, (_, mounted) in mounts(model).items()
    )
    for name, replica in REPLICAS.items():
        # Their command line (the image's ENTRYPOINT, then these) is one the CLI takes.
        config, _ = parse_command_line([*image_entrypoint()[1:], *replica["command"]])
        assert config.model.remote is not None
        url = urlsplit(config.model.remote.base_url)
        assert (url.hostname, url.port) == model_address(), name
        assert config.model.remote.max_concurrent_runs == int(flag(command, "--parallel"))


def test_compose_balancer_runs_the_configuration_against_the_replicas() -> None:
    balancer = SERVICES["balancer"]
    assert balancer["image"].startswith("haproxy:2.6")
    assert mounts(balancer)["/usr/local/etc/haproxy/haproxy.cfg"] == ("./haproxy.cfg", True)
    # The environment compose gives is the file's own defaults, and names the replicas.
    assert balancer["environment"] == haproxy_defaults()
    replicas = {balancer["environment"][name] for name in ("REPLICA1", "REPLICA2")}
    assert replicas == {f"{name}:{image_port()}" for name in REPLICAS}
    published = {str(port).rsplit(":", 1)[-1] for port in balancer["ports"]}
    assert str(image_port()) not in published


# -- the tenants example ----------------------------------------------------------------------------


def test_the_tenants_example_lives_where_the_replicas_mount_it() -> None:
    tenants = tomllib.loads(TENANTS_EXAMPLE.read_text())["tenant"]
    replica_mounts = mounts(next(iter(REPLICAS.values())))
    for tenant in tenants:
        assert set(tenant) <= TENANT_KEYS
        for path in [tenant["workspace_root"], *tenant.get("tools_dirs", [])]:
            assert any(PurePosixPath(path).is_relative_to(target) for target in replica_mounts), path
            # The directory a tenant's path names exists in what compose mounts there.
            target = next(t for t in replica_mounts if PurePosixPath(path).is_relative_to(t))
            source = DEPLOY / replica_mounts[target][0] / PurePosixPath(path).relative_to(target)
            assert source.is_dir(), source
            assert any(PurePosixPath(path).is_relative_to(target) for target in deployment_mounts())


# -- Kubernetes -------------------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        documents += [document for document in yaml.safe_load_all(path.read_text()) if document]
    return documents


MANIFESTS = manifests()


def the(kind: str) -> dict[str, Any]:
    found = [document for document in MANIFESTS if document["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} manifests"
    return found[0]


DEPLOYMENT = the("Deployment")
POD = DEPLOYMENT["spec"]["template"]
CONTAINER = POD["spec"]["containers"][0]


def deployment_mounts() -> dict[str, bool]:
    """Where the container mounts each volume: path -> read-only."""
    return {mount["mountPath"]: mount.get("readOnly", False) for mount in CONTAINER["volumeMounts"]}


@pytest.mark.parametrize(
    "document", MANIFESTS, ids=lambda document: f"{document['kind']}-{document['metadata']['name']}"
)
def test_each_manifest_validates_against_the_kubernetes_schemas(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kubernetes_validate_refuses_an_unknown_field() -> None:
    broken = json.loads(json.dumps(DEPLOYMENT))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_manifests_are_the_ones_issue_31_asks_for() -> None:
    kinds = {document["kind"] for document in MANIFESTS}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    } <= kinds
    assert the("HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2"


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def test_the_deployment_probes_routes_the_app_has_on_its_port() -> None:
    assert DEPLOYMENT["spec"]["replicas"] == 2
    assert CONTAINER["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert CONTAINER["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ports = {port["name"]: port["containerPort"] for port in CONTAINER["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        check = CONTAINER[probe]["httpGet"]
        assert check["path"] in ROUTES
        assert ports.get(check["port"], check["port"]) == image_port()
    assert list(ports.values()) == [image_port()]


def test_the_deployment_stops_after_the_daemon_has_drained() -> None:
    pre_stop = CONTAINER["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = POD["spec"]["terminationGracePeriodSeconds"]
    assert grace >= 15 and grace >= pre_stop + DRAIN_SECONDS


def test_the_deployment_runs_confined_unprivileged_and_read_only() -> None:
    pod_security = POD["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] == image_uid()
    security = CONTAINER["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    assert {"name": "LLAMA_AGENT_CONFINEMENT", "value": "required"} in CONTAINER["env"]
    requests, limits = CONTAINER["resources"]["requests"], CONTAINER["resources"]["limits"]
    assert set(requests) == set(limits) == {"cpu", "memory"}


def test_the_deployment_writes_only_to_its_volumes_and_reads_the_tenants_read_only() -> None:
    volumes = {volume["name"]: volume for volume in POD["spec"]["volumes"]}
    by_path = {mount["mountPath"]: volumes[mount["name"]] for mount in CONTAINER["volumeMounts"]}
    env = runtime_env()
    for writes in (env["LLAMA_AGENT_CONFIG_DIR"], env["HOME"], "/tmp"):
        target = next((path for path in by_path if PurePosixPath(writes).is_relative_to(path)), None)
        assert target is not None and not deployment_mounts()[target], f"{writes}: not on a writable volume"
        assert "emptyDir" in by_path[target] or "persistentVolumeClaim" in by_path[target]
    tenants_dir = str(PurePosixPath(flag(image_entrypoint(), "--tenants")).parent)
    assert deployment_mounts()[tenants_dir] is True
    assert "configMap" in by_path[tenants_dir] or "secret" in by_path[tenants_dir]
    claims = {
        document["metadata"]["name"] for document in MANIFESTS if document["kind"] == "PersistentVolumeClaim"
    }
    for volume in volumes.values():
        if "persistentVolumeClaim" in volume:
            assert volume["persistentVolumeClaim"]["claimName"] in claims


def test_the_deployment_reaches_the_model_server_the_network_policy_lets_it() -> None:
    config, _ = parse_command_line([*image_entrypoint()[1:], *CONTAINER["args"]])
    assert config.model.remote is not None
    url = urlsplit(config.model.remote.base_url)
    policy = the("NetworkPolicy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    model_rules = [rule for rule in policy["egress"] if any(port["port"] != 53 for port in rule["ports"])]
    assert len(model_rules) == 1, "one egress rule besides DNS: to the model server"
    assert [port["port"] for port in model_rules[0]["ports"]] == [url.port]
    # The model server's Service is named as its pods are labelled.
    (peer,) = model_rules[0]["to"]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == url.hostname
    for rule in policy["egress"]:
        assert rule.get("to") and rule.get("ports"), "an egress rule open to every peer or port"
    for rule in policy["ingress"]:
        assert rule.get("from") and [port["port"] for port in rule["ports"]] == [image_port()]


def test_the_selectors_select_the_deployments_pods() -> None:
    labels = POD["metadata"]["labels"]
    assert selects(DEPLOYMENT["spec"]["selector"]["matchLabels"], labels)
    assert selects(the("Service")["spec"]["selector"], labels)
    assert selects(the("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    assert selects(the("NetworkPolicy")["spec"]["podSelector"]["matchLabels"], labels)
    assert the("PodDisruptionBudget")["spec"]["minAvailable"] == 1 < DEPLOYMENT["spec"]["replicas"]
    target = the("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", DEPLOYMENT["metadata"]["name"])
    assert the("HorizontalPodAutoscaler")["spec"]["minReplicas"] >= DEPLOYMENT["spec"]["replicas"]


def test_the_service_and_ingress_reach_the_container_port() -> None:
    service = the("Service")
    ports = {port["name"]: port["containerPort"] for port in CONTAINER["ports"]}
    (service_port,) = service["spec"]["ports"]
    assert ports.get(service_port["targetPort"], service_port["targetPort"]) == image_port()
    ingresses = [document for document in MANIFESTS if document["kind"] == "Ingress"]
    routed = {}
    for ingress in ingresses:
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                routed[path["path"]] = ingress
                assert path["pathType"] == "Exact"
                backend = path["backend"]["service"]
                assert backend["name"] == service["metadata"]["name"]
                assert backend["port"]["name"] == service_port["name"]
    assert set(routed) == PUBLIC_ROUTES
    # An MCP session's requests reach the replica that holds it; WebSockets spread freely.
    assert "nginx.ingress.kubernetes.io/upstream-hash-by" in routed["/mcp"]["metadata"]["annotations"]
    assert "nginx.ingress.kubernetes.io/upstream-hash-by" not in routed["/lsp"]["metadata"]["annotations"]
