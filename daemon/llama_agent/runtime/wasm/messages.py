"""The jobs the daemon sends its worker processes and the replies they send back, typed.

Both sides handle the dataclasses below; on the pipes each is one JSON object, written and read
here only (`encode`, `decode_job`, `decode_reply`). A job names its kind in `op`, a reply in
`kind`. A message that does not decode (not JSON, an unknown kind, a field missing or of another
type, larger than its job's reply can be) raises `MalformedMessage`, saying what is wrong: the
daemon then treats the worker as broken, never trusting what it sent.

A worker answers a job with `Started` once the component is loaded (unless the job says it is
loaded already), then one final reply: `Described`, `Done` or `Failed`, or `QuotaExceeded` as it
exits. After a `Done` that says it is `preparing`, and after a `PrepareJob`, a `Prepared` follows.
`TimedOut`, `Cancelled` and `Crashed` are how the pool ends a job the worker did not answer; they
never cross a pipe.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from llama_agent.runtime.tools.limits import Limits
from llama_agent.runtime.tools.metadata import ToolMetadata, metadata_from_dict
from llama_agent.runtime.wasm.confine import MODES, Mode
from llama_agent.runtime.wasm.contracts import Contract, IncompatibleComponent, contract_from_wire
from llama_agent.runtime.wasm.executor import Invocation, Sandbox

# The largest reply a job can have, beyond its capped streams: a `Described` (metadata is checked
# to hold far less: runtime/tools/metadata.py), a `Prepared`, the fields around a `Done`'s texts.
MAX_DESCRIBED_BYTES = 1024 * 1024
MESSAGE_OVERHEAD_BYTES = 64 * 1024
# A `Done` carries three texts (result, stdout, stderr), each capped at the call's output_bytes of
# UTF-8; in JSON a byte may take up to 6 (a control character, as \u0000).
STREAMS_PER_CALL = 3
JSON_BYTES_PER_BYTE = 6


class MalformedMessage(ValueError):
    """A message on a worker pipe that does not decode; the text says what is wrong with it."""


# -- jobs: daemon to worker ---------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledTool:
    """Which compiled component a job runs, and how to call it: `artifact` is its cache entry,
    `digest` the sha256 the daemon verified it has (the worker checks the file it opens)."""

    artifact: str
    digest: str
    contract: Contract


@dataclass(frozen=True)
class Confinement:
    """How a worker confines itself on its first job (confine.py), for good: `mode` is required,
    best-effort or off; `readable` are directories it may read besides the job's granted ones and
    its own runtime (the compile cache's entries). A confined worker takes only jobs of the same
    `confinement_key`."""

    mode: Mode = "off"
    readable: tuple[str, ...] = ()


UNCONFINED = Confinement()


@dataclass(frozen=True)
class DescribeJob:
    """Read a tool's metadata (`describe()`) within `limits`."""

    tool: CompiledTool
    limits: Limits
    loaded: bool = False  # the worker has the component loaded: it sends no `Started`
    confinement: Confinement = UNCONFINED


@dataclass(frozen=True)
class InvokeJob:
    """Make one call of a tool, in `sandbox`, with arguments already validated and coerced."""

    tool: CompiledTool
    sandbox: Sandbox
    arguments: Mapping[str, Any]
    prepare: bool = True  # after answering, make the next instance of the tool (`Prepared` follows)
    loaded: bool = False  # the worker has an instance of the tool ready: it sends no `Started`
    confinement: Confinement = UNCONFINED


@dataclass(frozen=True)
class PrepareJob:
    """Make an instance of a tool ahead of a call, in `sandbox`; answered by `Prepared`."""

    tool: CompiledTool
    sandbox: Sandbox
    confinement: Confinement = UNCONFINED


Job = DescribeJob | InvokeJob | PrepareJob


def confinement_key(job: Job) -> Hashable:
    """What a worker confined by `job` may serve: jobs with an equal key (the same mode, readable
    directories and granted directories with their modes). Unconfined workers all serve alike."""
    confinement = job.confinement
    if confinement.mode == "off":
        return "off"
    dirs = () if isinstance(job, DescribeJob) else job.sandbox.dirs
    return confinement, frozenset((host, writable) for host, _, writable in dirs)


# -- replies: worker to daemon -------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """The component is loaded: the call's deadline starts now."""


@dataclass(frozen=True)
class Described:
    metadata: ToolMetadata
    retire: bool = False  # the worker exits after this reply


@dataclass(frozen=True)
class Done:
    """A call that ran, however it ended (a trap and a timeout inside the guest are outcomes too)."""

    outcome: Invocation
    retire: bool = False  # the worker exits after this reply
    preparing: bool = False  # the worker makes the next instance of the tool: `Prepared` follows


@dataclass(frozen=True)
class Failed:
    """A job that could not run (a component that cannot be loaded, a describe() that trapped)."""

    error: str
    retire: bool = False  # the worker exits after this reply


@dataclass(frozen=True)
class QuotaExceeded:
    """The call wrote more than its quota; the worker has exited."""

    written: int
    limit: int


@dataclass(frozen=True)
class Prepared:
    """The tools (digests) the worker has an instance ready for."""

    ready: frozenset[str]


Reply = Started | Described | Done | Failed | QuotaExceeded | Prepared
FinalReply = Described | Done | Failed | QuotaExceeded


# -- how the pool ends a job the worker did not answer -------------------------------------------


@dataclass(frozen=True)
class TimedOut:
    loading: bool  # while loading the component, not while the call ran


@dataclass(frozen=True)
class Cancelled:
    pass


@dataclass(frozen=True)
class Crashed:
    error: str  # why: the worker process ended, or sent what does not decode


Outcome = FinalReply | TimedOut | Cancelled | Crashed


def reply_bound(job: Job) -> int:
    """The most bytes any reply to `job` can take: a larger one is refused unread."""
    if isinstance(job, InvokeJob):
        streams = STREAMS_PER_CALL * JSON_BYTES_PER_BYTE * job.sandbox.limits.output_bytes
        return streams + MESSAGE_OVERHEAD_BYTES
    if isinstance(job, DescribeJob):
        return MAX_DESCRIBED_BYTES + MESSAGE_OVERHEAD_BYTES
    return PREPARED_BOUND


# The most bytes a `Prepared` can take (it lists a few digests).
PREPARED_BOUND = MESSAGE_OVERHEAD_BYTES


# -- encoding ------------------------------------------------------------------------------------


def encode(message: Job | Reply) -> bytes:
    """`message` as it goes on a pipe."""
    text = json.dumps(_wire(message), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate in an argument still crosses


def _wire(message: Job | Reply) -> dict[str, Any]:
    match message:
        case DescribeJob(tool, limits, loaded, confinement):
            return {
                "op": "describe",
                **_tool_wire(tool),
                "limits": _limits_wire(limits),
                "loaded": loaded,
                "confinement": _confinement_wire(confinement),
            }
        case InvokeJob(tool, sandbox, arguments, prepare, loaded, confinement):
            return {
                "op": "invoke",
                **_tool_wire(tool),
                **_sandbox_wire(sandbox),
                "arguments": dict(arguments),
                "prepare": prepare,
                "loaded": loaded,
                "confinement": _confinement_wire(confinement),
            }
        case PrepareJob(tool, sandbox, confinement):
            return {
                "op": "prepare",
                **_tool_wire(tool),
                **_sandbox_wire(sandbox),
                "confinement": _confinement_wire(confinement),
            }
        case Started():
            return {"kind": "started"}
        case Described(metadata, retire):
            return {"kind": "described", "metadata": dataclasses.asdict(metadata), "retire": retire}
        case Done(outcome, retire, preparing):
            return {"kind": "done", **vars(outcome), "retire": retire, "preparing": preparing}
        case Failed(error, retire):
            return {"kind": "error", "error": error, "retire": retire}
        case QuotaExceeded(written, limit):
            return {"kind": "quota", "written": written, "limit": limit}
        case Prepared(ready):
            return {"kind": "prepared", "ready": sorted(ready)}
    raise TypeError(f"not a worker message: {message!r}")


def _tool_wire(tool: CompiledTool) -> dict[str, Any]:
    return {"artifact": tool.artifact, "digest": tool.digest, "contract": tool.contract.to_wire()}


def _sandbox_wire(sandbox: Sandbox) -> dict[str, Any]:
    return {
        "limits": _limits_wire(sandbox.limits),
        "dirs": [list(entry) for entry in sandbox.dirs],
        "env": [list(entry) for entry in sandbox.env],
    }


@functools.lru_cache(maxsize=256)
def _confinement_wire(confinement: Confinement) -> dict[str, Any]:
    """`confinement` as a message carries it (made once per value; only ever read)."""
    return {"mode": confinement.mode, "readable": list(confinement.readable)}


@functools.lru_cache(maxsize=256)
def _limits_wire(limits: Limits) -> dict[str, Any]:
    """`limits` as a message carries them (made once per value: `asdict` costs a call ~10 µs).
    The dict is shared: it is only ever read, by `json.dumps`."""
    return dataclasses.asdict(limits)


# -- decoding ------------------------------------------------------------------------------------


def decode_job(data: bytes) -> Job:
    """The job in `data`; raises MalformedMessage."""
    fields = _Fields(_object(data), "a job")
    op = fields.text("op")
    if op == "describe":
        limits = _limits(fields.mapping("limits"))
        return DescribeJob(_tool(fields), limits, fields.flag("loaded"), _confinement(fields))
    if op == "invoke":
        return InvokeJob(
            _tool(fields),
            _sandbox(fields),
            fields.mapping("arguments"),  # JSON values, checked by the daemon against the tool's parameters
            prepare=fields.flag("prepare"),
            loaded=fields.flag("loaded"),
            confinement=_confinement(fields),
        )
    if op == "prepare":
        return PrepareJob(_tool(fields), _sandbox(fields), _confinement(fields))
    raise MalformedMessage(f"a job of unknown kind {op!r}")


def decode_reply(data: bytes) -> Reply:
    """The reply in `data`; raises MalformedMessage."""
    fields = _Fields(_object(data), "a reply")
    kind = fields.text("kind")
    if kind == "started":
        return Started()
    if kind == "described":
        try:
            metadata = metadata_from_dict(fields.mapping("metadata"))
        except (KeyError, TypeError, ValueError) as error:
            raise MalformedMessage(f"the metadata of a described reply does not decode: {error!r}") from None
        return Described(metadata, fields.flag("retire"))
    if kind == "done":
        return Done(_invocation(fields), fields.flag("retire"), fields.flag("preparing"))
    if kind == "error":
        return Failed(fields.text("error"), fields.flag("retire"))
    if kind == "quota":
        return QuotaExceeded(fields.integer("written"), fields.integer("limit"))
    if kind == "prepared":
        ready = fields.array("ready")
        if not all(isinstance(digest, str) for digest in ready):
            raise MalformedMessage("the ready tools of a prepared reply are not all text")
        return Prepared(frozenset(ready))
    raise MalformedMessage(f"a reply of unknown kind {kind!r}")


def _object(data: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise MalformedMessage(f"not JSON: {error}") from None
    if not isinstance(decoded, dict):
        raise MalformedMessage(f"a JSON {type(decoded).__name__}, not an object")
    return decoded


class _Fields:
    """The fields of one decoded message, each read as the type it must have."""

    def __init__(self, fields: Mapping[str, Any], what: str) -> None:
        self._fields = fields
        self._what = what

    def _get(self, name: str, types: type | tuple[type, ...], expected: str) -> Any:
        if name not in self._fields:
            raise MalformedMessage(f"{self._what} without its {name!r}")
        value = self._fields[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
            raise MalformedMessage(f"{self._what} whose {name!r} is {type(value).__name__}, not {expected}")
        return value

    def text(self, name: str) -> str:
        value: str = self._get(name, str, "text")
        return value

    def flag(self, name: str) -> bool:
        value: bool = self._get(name, bool, "a boolean")
        return value

    def integer(self, name: str) -> int:
        value: int = self._get(name, int, "an integer")
        return value

    def number(self, name: str) -> float:
        return float(self._get(name, (int, float), "a number"))

    def mapping(self, name: str) -> dict[str, Any]:
        value: dict[str, Any] = self._get(name, dict, "an object")
        return value

    def array(self, name: str) -> list[Any]:
        value: list[Any] = self._get(name, list, "a list")
        return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _tool(fields: _Fields) -> CompiledTool:
    try:
        contract = contract_from_wire(fields.mapping("contract"))
    except IncompatibleComponent as error:
        raise MalformedMessage(str(error)) from None
    return CompiledTool(fields.text("artifact"), fields.text("digest"), contract)


def _limits(wire: dict[str, Any]) -> Limits:
    fields = _Fields(wire, "a job's limits")
    known = {field.name for field in dataclasses.fields(Limits)}
    unknown = sorted(wire.keys() - known)
    if unknown:
        raise MalformedMessage(f"a job's limits name {unknown[0]!r}, which is not a limit")
    return Limits(
        timeout_seconds=fields.number("timeout_seconds"),
        memory_bytes=fields.integer("memory_bytes"),
        output_bytes=fields.integer("output_bytes"),
        memories=fields.integer("memories"),
        write_bytes=fields.integer("write_bytes"),
    )


def _confinement(fields: _Fields) -> Confinement:
    wire = _Fields(fields.mapping("confinement"), "a job's confinement")
    mode = next((known for known in MODES if known == wire.text("mode")), None)
    readable = wire.array("readable")
    if mode is None or not all(isinstance(path, str) for path in readable):
        raise MalformedMessage(f"a confinement that does not decode: {fields.mapping('confinement')!r}")
    return Confinement(mode, tuple(readable))


def _sandbox(fields: _Fields) -> Sandbox:
    dirs = tuple(_triple(entry) for entry in fields.array("dirs"))
    env = tuple(_pair(entry) for entry in fields.array("env"))
    return Sandbox(_limits(fields.mapping("limits")), dirs=dirs, env=env)


def _triple(entry: object) -> tuple[str, str, bool]:
    if isinstance(entry, list) and len(entry) == 3:
        host, guest, writable = entry
        if isinstance(host, str) and isinstance(guest, str) and isinstance(writable, bool):
            return host, guest, writable
    raise MalformedMessage(f"a granted directory that is not [host, guest, writable]: {entry!r}")


def _pair(entry: object) -> tuple[str, str]:
    if isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry):
        return entry[0], entry[1]
    raise MalformedMessage(f"an environment variable that is not [name, value]: {entry!r}")


def _invocation(fields: _Fields) -> Invocation:
    return Invocation(
        text=fields.text("text"),
        is_error=fields.flag("is_error"),
        stdout=fields.text("stdout"),
        stderr=fields.text("stderr"),
        truncated=fields.flag("truncated"),
        timed_out=fields.flag("timed_out"),
        duration_ms=fields.number("duration_ms"),
        confinement=fields.text("confinement"),
        peak_memory_bytes=fields.integer("peak_memory_bytes"),
        bytes_written=fields.integer("bytes_written"),
    )
