"""Confines a worker process by the operating system, so that even code that escaped the
WebAssembly runtime stays within the call's granted directories and has no network.

Three layers, applied once, before the worker starts any thread (Landlock binds only the thread
that asks, and a thread left unconfined could be taken over by an escaped guest):

- `PR_SET_NO_NEW_PRIVS`: nothing the process runs can gain privileges (and the two below need it).
- Landlock (Linux 5.13+): the file system is reduced to the call's granted directories (read-only
  or read-write, as granted), the compile cache's entries (read-only) and what the worker itself
  needs to keep running (the interpreter, its libraries, the `llama_agent` package, /dev/null,
  /dev/urandom, its own /proc entry), all read-only. Nothing may be executed. From ABI 4 on no TCP
  bind or connect; from ABI 6 on no signals to, and no abstract sockets of, processes outside.
- seccomp (x86-64): no sockets at all (`socket()` fails with EACCES: the worker talks to the daemon
  over pipes), and none of the calls that reach past a sandbox (ptrace, process_vm_*, mount and the
  new mount API, new namespaces, bpf, io_uring, module loading, keyrings, open_by_handle_at,
  execve). Calls of another architecture's ABI (i386, x32) end the process.

A small ctypes binding of the three Landlock system calls: the PyPI `landlock` package is a
development release. Where the kernel lacks Landlock (ENOSYS, or EOPNOTSUPP when it is built in but
off) the worker goes on with seccomp alone in best-effort mode and refuses calls in required mode;
`availability()` lets the daemon warn once. Refused accesses are not counted: a seccomp ERRNO
action and a Landlock denial leave no counter in the process (Landlock reports them to the audit
subsystem only), and trapping each refusal would need a signal handler below Python.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import platform
import stat
import struct
import sys
import sysconfig
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Mode = Literal["required", "best-effort", "off"]
MODES: tuple[Mode, ...] = ("required", "best-effort", "off")
# The environment variable that sets the mode for every face (`serve`, `run`, `mcp`, `acp`).
MODE_VARIABLE = "LLAMA_AGENT_CONFINEMENT"
DEFAULT_MODE: Mode = "best-effort"
# For tests of the degraded path: the worker behaves as on a kernel without Landlock.
FAKE_NO_LANDLOCK_VARIABLE = "LLAMA_AGENT_FAKE_NO_LANDLOCK"

# -- Landlock (include/uapi/linux/landlock.h); syscall numbers are the same on every architecture.
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2: link or rename a file into another directory
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
FS_ABI_1 = (1 << 13) - 1
# Every file-system right each ABI version knows: all of them are handled (denied unless a rule
# allows them), so what a newer kernel can restrict is restricted.
# (ABI 4 adds network rights, ABI 6 scopes; from ABI 5 on, every right below.)
FS_HANDLED = {
    1: FS_ABI_1,
    2: FS_ABI_1 | FS_REFER,
    3: FS_ABI_1 | FS_REFER | FS_TRUNCATE,
    4: FS_ABI_1 | FS_REFER | FS_TRUNCATE,
}
FS_ALL = FS_ABI_1 | FS_REFER | FS_TRUNCATE | FS_IOCTL_DEV
# The rights a rule on a file (not a directory) may carry.
FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
READ = FS_READ_FILE | FS_READ_DIR
# What a read-write grant allows: what WASI can do to files and directories (no devices, FIFOs or
# sockets, no execution).
READ_WRITE = (
    READ
    | FS_WRITE_FILE
    | FS_REMOVE_DIR
    | FS_REMOVE_FILE
    | FS_MAKE_DIR
    | FS_MAKE_REG
    | FS_MAKE_SYM
    | FS_REFER
    | FS_TRUNCATE
)
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

# -- prctl and seccomp (include/uapi/linux/prctl.h, seccomp.h, filter.h, audit.h)
PR_SET_NO_NEW_PRIVS = 38
SYS_SECCOMP_X86_64 = 317
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1  # every thread of the process, should there be any
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06
SECCOMP_DATA_NR = 0  # offsetof(struct seccomp_data, nr)
SECCOMP_DATA_ARCH = 4
SECCOMP_DATA_ARG0_LOW = 16  # the low 32 bits of args[0] (little-endian)
SYS_CLONE = 56
# clone() flags that make new namespaces; a clone with any of them fails with EPERM.
CLONE_NAMESPACES = 0x7E020000  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET

# x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl) and the errno each gets.
SYS_SOCKET = 41
SYS_CLONE3 = 435  # its flags are out of a filter's reach: ENOSYS, and glibc falls back to clone
# fmt: off
EPERM_SYSCALLS = (
    59, 322,  # execve, execveat
    101, 310, 311, 312, 438,  # ptrace, process_vm_readv/writev, kcmp, pidfd_getfd
    165, 166, 155, 161, 442,  # mount, umount2, pivot_root, chroot, mount_setattr
    428, 429, 430, 431, 432, 433,  # open_tree, move_mount, fsopen, fsconfig, fsmount, fspick
    272, 308,  # unshare, setns
    321, 298, 323,  # bpf, perf_event_open, userfaultfd
    425, 426, 427,  # io_uring_*: its operations bypass seccomp
    175, 313, 176,  # init_module, finit_module, delete_module
    246, 320, 169, 167, 168, 163,  # kexec_load, kexec_file_load, reboot, swapon, swapoff, acct
    248, 249, 250,  # add_key, request_key, keyctl
    303, 304,  # name_to_handle_at, open_by_handle_at
    172, 173,  # iopl, ioperm
)
# fmt: on
DENIED_SYSCALLS: dict[int, int] = {
    SYS_SOCKET: errno.EACCES,
    SYS_CLONE3: errno.ENOSYS,
    **dict.fromkeys(EPERM_SYSCALLS, errno.EPERM),
}


class ConfinementError(Exception):
    """The worker cannot be confined as its mode requires; the message says what is missing."""


@dataclass(frozen=True)
class Rule:
    """A path the confined process may reach: read-only, or read-write as a read-write grant."""

    path: str
    writable: bool = False


@dataclass(frozen=True)
class Applied:
    """What confinement a process got: the Landlock ABI version it was restricted under (0: none),
    whether its seccomp filter is installed, and why a layer is missing, if one is."""

    landlock_abi: int
    seccomp: bool
    missing: str = ""

    @property
    def summary(self) -> str:
        """A short name for a call's figures and logs: 'landlock+seccomp', 'seccomp', 'none'."""
        layers = [name for name, on in (("landlock", self.landlock_abi > 0), ("seccomp", self.seccomp)) if on]
        return "+".join(layers) or "none"


NOT_CONFINED = Applied(0, False, "confinement is off")


# -- system calls ---------------------------------------------------------------------------------


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),  # ABI 4
        ("scoped", ctypes.c_uint64),  # ABI 6
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the kernel's header: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.restype = ctypes.c_int
    return libc


def _syscall(number: int, *arguments: object) -> int:
    """`syscall(number, ...)`; raises OSError with the call's errno when it fails."""
    result = int(_libc().syscall(ctypes.c_long(number), *arguments))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def landlock_abi() -> int:
    """The Landlock ABI version the kernel offers; 0 if it has none (or it is turned off)."""
    if os.environ.get(FAKE_NO_LANDLOCK_VARIABLE) == "1" or sys.platform != "linux":
        return 0
    try:
        version = ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)
        return _syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), version)
    except OSError as error:
        if error.errno in (errno.ENOSYS, errno.EOPNOTSUPP):
            return 0
        raise


def seccomp_supported() -> bool:
    """Whether this process's architecture is the one the seccomp filter is written for."""
    return sys.platform == "linux" and platform.machine() == "x86_64" and struct.calcsize("P") == 8


def availability() -> Applied:
    """What a worker started now would get, as the daemon sees it (same kernel): for its log."""
    abi = landlock_abi()
    return Applied(abi, seccomp_supported(), _missing(abi))


def _missing(abi: int) -> str:
    """What a process confined under Landlock ABI `abi` (0: none) lacks, for a message."""
    missing = [] if abi else ["Landlock (the kernel has none, or it is turned off)"]
    if not seccomp_supported():
        missing.append(f"seccomp (the filter is for x86-64, not {platform.machine()})")
    return "; ".join(missing)


# -- Landlock ---------------------------------------------------------------------------------------


def _ruleset(abi: int) -> int:
    """A new Landlock ruleset handling every right `abi` knows; its file descriptor."""
    attr = _RulesetAttr(FS_HANDLED.get(abi, FS_ALL), 0, 0)
    size = 8
    if abi >= 4:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
        size = 16
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
    no_flags = ctypes.c_uint32(0)
    return _syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), no_flags)


def _add_rule(ruleset: int, rule: Rule, handled: int) -> None:
    """Allow `rule` in `ruleset`; a path that does not exist (now) is left out: nothing to reach."""
    try:
        fd = os.open(rule.path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return
    try:
        allowed = (READ_WRITE if rule.writable else READ) & handled
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            allowed &= FS_FILE_RIGHTS
        attr = _PathBeneathAttr(allowed, fd)
        no_flags = ctypes.c_uint32(0)
        _syscall(SYS_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(attr), no_flags)
    finally:
        os.close(fd)


def _restrict_with_landlock(abi: int, rules: Iterable[Rule]) -> None:
    ruleset = _ruleset(abi)
    try:
        handled = FS_HANDLED.get(abi, FS_ALL)
        for rule in rules:
            _add_rule(ruleset, rule, handled)
        _syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0))
    finally:
        os.close(ruleset)


# -- seccomp ------------------------------------------------------------------------------------------


def _filter_program() -> list[tuple[int, int, int, int]]:
    """The BPF program, as (code, jt, jf, k): checks the architecture, then each denied call."""
    program = [
        (BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        (BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        (BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        (BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
        (BPF_JGE_K, 0, 1, X32_SYSCALL_BIT),  # the x32 ABI shares the architecture value
        (BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
    ]
    for number, code in DENIED_SYSCALLS.items():
        program += [(BPF_JEQ_K, 0, 1, number), (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | code)]
    program += [
        (BPF_JEQ_K, 0, 3, SYS_CLONE),
        (BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARG0_LOW),
        (BPF_JSET_K, 0, 1, CLONE_NAMESPACES),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    return program


def _install_seccomp() -> None:
    program = _filter_program()
    filters = (_SockFilter * len(program))(*(_SockFilter(*instruction) for instruction in program))
    fprog = _SockFprog(len(program), filters)
    _syscall(SYS_SECCOMP_X86_64, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(fprog))


def _no_new_privileges() -> None:
    if _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


# -- the whole -----------------------------------------------------------------------------------------


def runtime_rules(package_root: Path) -> list[Rule]:
    """What a worker reads to keep running, read-only: the interpreter's prefixes (standard library,
    extension modules), the virtual environment, the `llama_agent` package, shared libraries, a few
    devices, and its own /proc entry (resolved now: other processes' entries stay out of reach)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, str(package_root)}
    paths.update(sysconfig.get_paths().values())
    paths.update(("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/etc/ld.so.cache"))
    paths.update(("/dev/null", "/dev/urandom", "/dev/random", os.path.realpath("/proc/self")))
    return [Rule(path) for path in sorted(paths)] + [Rule("/dev/null", writable=True)]


def confine(rules: Sequence[Rule], mode: Mode) -> Applied:
    """Confine this process to `rules`, for good. Call it before the process starts any thread.

    `required`: raises ConfinementError if Landlock or seccomp is missing (the process is then
    confined as far as it could be, and should exit). `best-effort`: goes on with what there is.
    `off`: does nothing."""
    if mode == "off":
        return NOT_CONFINED
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:  # Landlock would bind this thread only; the others would stay free
        raise ConfinementError(f"confine() must run before any thread starts ({threads} run)")
    _no_new_privileges()
    abi = landlock_abi()
    if abi:
        _restrict_with_landlock(abi, rules)
    if seccomp_supported():
        _install_seccomp()
    applied = _checked(Applied(abi, seccomp_supported(), _missing(abi)), rules)
    if mode == "required" and applied.missing:
        raise ConfinementError(f"confinement is required, but this system lacks {applied.missing}")
    return applied


def _checked(applied: Applied, rules: Sequence[Rule]) -> Applied:
    """`applied`, once each layer it claims is seen to refuse: the root directory cannot be listed
    (unless a rule allows it), a TCP socket cannot be made. A layer that does not refuse is
    reported missing: a call's figures never claim a confinement that is not there."""
    missing = [applied.missing] if applied.missing else []
    abi, seccomp = applied.landlock_abi, applied.seccomp
    if abi and "/" not in {rule.path for rule in rules} and not _refused(_open_root):
        abi = 0
        missing.append("Landlock (the ruleset did not take effect)")
    if seccomp and not _refused(_tcp_socket):
        seccomp = False
        missing.append("seccomp (the filter did not take effect)")
    return Applied(abi, seccomp, "; ".join(missing))


def _open_root() -> int:
    return os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _tcp_socket() -> int:
    fd = int(_libc().socket(2, 1, 0))  # AF_INET, SOCK_STREAM
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return fd


def _refused(attempt: Callable[[], int]) -> bool:
    """Whether `attempt` (which returns a descriptor) fails with EACCES."""
    try:
        os.close(attempt())
    except OSError as error:
        return error.errno == errno.EACCES
    return False


_warned: set[str] = set()


def warn_if_unavailable(mode: Mode) -> None:
    """Say once in the daemon's log what confinement workers will lack, if any."""
    if mode == "off":
        if "off" not in _warned:
            _warned.add("off")
            log.warning("worker confinement is off (%s=off): tool workers are not confined", MODE_VARIABLE)
        return
    missing = availability().missing
    if missing and missing not in _warned:
        _warned.add(missing)
        consequence = "tool calls will be refused" if mode == "required" else "workers run without it"
        log.warning("worker confinement: this system lacks %s; %s", missing, consequence)


def mode_from_environment() -> Mode:
    """The confinement mode `LLAMA_AGENT_CONFINEMENT` sets; best-effort if unset. Raises
    ValueError for a value that is not a mode."""
    value = os.environ.get(MODE_VARIABLE, "").strip() or DEFAULT_MODE
    for mode in MODES:
        if value == mode:
            return mode
    raise ValueError(f"{MODE_VARIABLE} must be one of {', '.join(MODES)}, not {value!r}")
