"""What code that escaped the WebAssembly runtime would try from inside a worker process.

`attempts(targets)` makes each attempt and says how it went: "allowed", or "refused: EACCES"
(the errno's name). tests/unit/test_confine.py runs it in a child process confined by the real
`confine`, exactly as a worker confines itself; tests/e2e/test_confinement.py runs it inside a
daemon's worker while it serves a call (`SITECUSTOMIZE`, put on the workers' PYTHONPATH, patches it
into `Executor.invoke`). It runs as root, so only the confinement can refuse a file.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

CLONE_NEWUSER = 0x10000000

# Imported by the workers at start (before they confine themselves): each call's answer becomes
# the outcome of the attempts, against `targets` (JSON, written in: a worker's environment holds
# only what it needs, see workers.worker_environment).
SITECUSTOMIZE = """
import dataclasses, json, os, sys
sys.path.insert(0, {repo!r})
from tests.escape import attempts
from llama_agent.runtime.wasm import executor

_invoke = executor.Executor.invoke

def _escaped(self, *args, **kwargs):
    result = _invoke(self, *args, **kwargs)
    outcome = attempts(json.loads({targets!r}))
    return dataclasses.replace(result, text=json.dumps(outcome))

executor.Executor.invoke = _escaped
"""


def attempts(targets: Mapping[str, str]) -> dict[str, str]:
    """Each attempt's outcome, and the process's seccomp mode and no-new-privileges flag as
    /proc/self/status has them. `targets`: granted_file (inside a granted directory), granted_dir,
    outside_file (beside it, not granted), and optionally cache_key (the compile cache's key) and
    secret_variable (a variable of the daemon's environment no worker should have)."""
    tried: dict[str, Callable[[], Any]] = {
        "read_granted": lambda: _read(targets["granted_file"]),
        "write_granted": lambda: _write(os.path.join(targets["granted_dir"], "escaped.txt")),
        "read_outside": lambda: _read(targets["outside_file"]),
        "list_outside": lambda: os.listdir(os.path.dirname(targets["outside_file"])),
        "list_tmp": lambda: os.listdir("/tmp"),
        "list_home": lambda: os.listdir(os.path.expanduser("~")),
        "read_parent_environ": lambda: _read(f"/proc/{os.getppid()}/environ"),
        "inet_socket": lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close(),
        "inet6_socket": lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close(),
        "netlink_socket": lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW).close(),
        "unix_socket": lambda: socket.socket(socket.AF_UNIX).close(),
        "run_program": lambda: _run("/bin/true"),
    }
    if "cache_key" in targets:
        tried["read_cache_key"] = lambda: _read(targets["cache_key"])
    if "secret_variable" in targets:  # a secret in the daemon's environment
        tried["read_secret_variable"] = lambda: _variable(targets["secret_variable"])
    tried["new_user_namespace"] = _unshare_user  # last: where it is allowed, it changes who we are
    outcome = {name: _outcome(attempt) for name, attempt in tried.items()}
    with open("/proc/self/status") as status:  # as the process itself sees it, confined or not
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    modes = {"seccomp_mode": fields["Seccomp"].strip(), "no_new_privs": fields["NoNewPrivs"].strip()}
    return {**outcome, **modes}


def _outcome(attempt: Callable[[], Any]) -> str:
    try:
        attempt()
    except OSError as error:
        return f"refused: {errno.errorcode.get(error.errno or 0, str(error.errno))}"
    return "allowed"


def _variable(name: str) -> str:
    """The variable's value in this process's environment (as guest code that escaped reads it)."""
    with open("/proc/self/environ", "rb") as environ:
        for entry in environ.read().split(b"\0"):
            if entry.startswith(name.encode() + b"="):
                return entry.decode()
    raise FileNotFoundError(errno.ENOENT, f"no {name} in the environment")


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _write(path: str) -> None:
    with open(path, "w") as file:
        file.write("written from outside the sandbox")


def _run(program: str) -> None:
    pid = os.posix_spawn(program, [program], {})
    os.waitpid(pid, 0)


def _unshare_user() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
