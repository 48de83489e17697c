"""The WIT worlds a tool component may target, and how to call each.

* `llama-agent:tool` (wit/tool.wit): `describe()` and typed `invoke(args)`. Version 0.2 adds
  parameter bounds, choices and defaults and worked examples to the metadata; components built
  for 0.1 (wit/v0.1/tool.wit) load unchanged.
* `llama-cpp:tool` (wit/legacy/tool.wit), the original exploration's world:
  `get-metadata()` and `execute(list<tuple<string, string>>)`, loaded unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import wasmtime
from wasmtime.component import Component, ComponentInstanceType, ExportIndex, Func, Instance, Record

from llama_agent.runtime.tools.metadata import (
    ArgumentValue,
    ParamType,
    ToolExample,
    ToolMetadata,
    ToolParam,
    param_type_from_text,
)

# The minor versions of `llama-agent:tool` this host reads; the group is the minor.
NATIVE_INTERFACE = re.compile(r"^llama-agent:tool/tool@0\.([12])\.\d+$")
LEGACY_PACKAGE_PREFIX = "llama-cpp:tool"


class IncompatibleComponent(Exception):
    """The component exports neither supported world."""


@dataclass(frozen=True)
class CallOutcome:
    text: str
    is_error: bool


class Contract(Protocol):
    @property
    def world(self) -> str: ...

    def describe(self, store: wasmtime.Store, instance: Instance) -> ToolMetadata: ...

    def invoke(self, store: wasmtime.Store, instance: Instance, arguments: dict[str, Any]) -> CallOutcome: ...

    def to_wire(self) -> dict[str, str | None]:
        """What a worker process needs to call the component the same way."""
        ...


def _call(store: wasmtime.Store, func: Func, *args: Any) -> Any:
    result = func(store, *args)
    func.post_return(store)
    return result


def _func(store: wasmtime.Store, instance: Instance, name: str, within: str | None) -> Func:
    parent: ExportIndex | None = None
    if within is not None:
        parent = instance.get_export_index(store, within)
        if parent is None:
            raise IncompatibleComponent(f"missing export {within!r}")
    index = instance.get_export_index(store, name, parent)
    func = instance.get_func(store, index) if index is not None else None
    if func is None:
        raise IncompatibleComponent(f"missing export function {name!r}")
    return func


@dataclass(frozen=True)
class NativeContract:
    """`llama-agent:tool` 0.1 or 0.2; the version is the one in `interface`, so the wire form
    (the interface name) carries it."""

    interface: str
    world: str = "llama-agent:tool/plugin"

    def __post_init__(self) -> None:
        if not NATIVE_INTERFACE.match(self.interface):
            raise IncompatibleComponent(f"not a supported llama-agent:tool interface: {self.interface!r}")

    @property
    def minor(self) -> int:
        match = NATIVE_INTERFACE.match(self.interface)
        assert match is not None  # checked in __post_init__
        return int(match.group(1))

    def describe(self, store: wasmtime.Store, instance: Instance) -> ToolMetadata:
        raw = _call(store, _func(store, instance, "describe", self.interface))
        if self.minor == 1:
            params = tuple(_param_v1(p) for p in raw.params)
            return ToolMetadata(raw.name, raw.description, raw.version, params)
        return ToolMetadata(
            name=raw.name,
            description=raw.description,
            version=raw.version,
            params=tuple(_param_v2(p) for p in raw.params),
            examples=tuple(_example_v2(e) for e in raw.examples),
        )

    def invoke(self, store: wasmtime.Store, instance: Instance, arguments: dict[str, Any]) -> CallOutcome:
        args = [_record(name=name, value=value) for name, value in arguments.items()]
        result = _call(store, _func(store, instance, "invoke", self.interface), args)
        return CallOutcome(text=str(result.payload or ""), is_error=result.tag != "ok")

    def to_wire(self) -> dict[str, str | None]:
        return {"world": self.world, "interface": self.interface}


def _param_v1(raw: Any) -> ToolParam:
    return ToolParam(raw.name, raw.description, ParamType(raw.type), bool(raw.required))


def _param_v2(raw: Any) -> ToolParam:
    # wasmtime names record fields as WIT spells them, and lifts option<T> to None or the value and
    # the variant `value` (its cases have distinct Python types) to the bare bool, int, float or str.
    return ToolParam(
        name=raw.name,
        description=raw.description,
        type=ParamType(raw.type),
        required=bool(raw.required),
        minimum=raw.minimum,
        maximum=raw.maximum,
        choices=tuple(raw.choices),
        default=getattr(raw, "default-value"),
    )


def _example_v2(raw: Any) -> ToolExample:
    arguments: tuple[tuple[str, ArgumentValue], ...] = tuple((a.name, a.value) for a in raw.arguments)
    return ToolExample(request=raw.request, arguments=arguments, result=raw.result, answer=raw.answer)


@dataclass(frozen=True)
class LegacyContract:
    interface: str | None
    world: str = "llama-cpp:tool/tool"

    def describe(self, store: wasmtime.Store, instance: Instance) -> ToolMetadata:
        raw = _call(store, _func(store, instance, "get-metadata", self.interface))
        return ToolMetadata(
            name=raw.name,
            description=raw.description,
            version=raw.version,
            params=tuple(
                ToolParam(p.name, p.description, param_type_from_text(p.type), bool(p.required))
                for p in raw.params
            ),
            # `usage` is free text ("USE_TOOL: Echo, value=x") in a prompt format of its own: it
            # cannot be turned into a call, so it is not read.
        )

    def invoke(self, store: wasmtime.Store, instance: Instance, arguments: dict[str, Any]) -> CallOutcome:
        pairs = [(name, _legacy_text(value)) for name, value in arguments.items()]
        result = _call(store, _func(store, instance, "execute", self.interface), pairs)
        if result.success:
            return CallOutcome(text=result.data, is_error=False)
        return CallOutcome(text=result.error or result.data or "tool reported failure", is_error=True)

    def to_wire(self) -> dict[str, str | None]:
        return {"world": self.world, "interface": self.interface}


def contract_from_wire(wire: dict[str, Any]) -> Contract:
    interface = wire.get("interface")
    if wire.get("world") == NativeContract.world and isinstance(interface, str):
        return NativeContract(interface=interface)
    if wire.get("world") == LegacyContract.world and (interface is None or isinstance(interface, str)):
        return LegacyContract(interface=interface)
    raise IncompatibleComponent(f"unknown contract {wire!r}")


def _record(**fields: Any) -> Record:
    record = Record()
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def _legacy_text(value: Any) -> str:
    """The legacy world passes every argument as text; JSON spelling keeps booleans parseable."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


LEGACY_FUNCTIONS = frozenset({"get-metadata", "execute"})


def detect_contract(component: Component, engine: wasmtime.Engine) -> Contract:
    """Pick the contract from the component's exports, without instantiating it."""
    exports = component.type.exports(engine)
    for name in exports:
        if NATIVE_INTERFACE.match(name):
            return NativeContract(interface=name)
    if exports.keys() >= LEGACY_FUNCTIONS:
        return LegacyContract(interface=None)
    for name, item in exports.items():
        inner = item.ty
        if (
            name.startswith(LEGACY_PACKAGE_PREFIX)
            and isinstance(inner, ComponentInstanceType)
            and inner.exports(engine).keys() >= LEGACY_FUNCTIONS
        ):
            return LegacyContract(interface=name)
    found = ", ".join(sorted(exports)) or "nothing"
    raise IncompatibleComponent(
        "not a tool: exports neither llama-agent:tool/tool@0.1.x or 0.2.x nor the legacy "
        f"llama-cpp:tool world (get-metadata, execute); it exports {found}"
    )
