"""Tiny hand-written tool components for tests, generated as WebAssembly component text (WAT).

A componentize-py tool is ~18 MB and takes seconds to compile; the components made here are a few
hundred bytes and compile in milliseconds, so tests can make as many distinct tools as they like.
Each one implements the `llama-agent:tool/tool@0.1.0` interface of wit/v0.1/tool.wit, or, from
`tool_wasm_v2`, the 0.2.0 one of wit/tool.wit.

How a component is put together (the same shape wit-component emits):

* a core module with a memory, a bump-allocating `cabi_realloc` and the core `describe` / `invoke`;
* `canon lift` turns those into component functions over locally defined WIT types;
* a nested "shim" component imports those types and functions and re-exports them under their WIT
  names.  The validator only accepts an exported instance whose function signatures mention
  exported (named) types, which a bare `(instance (export ...))` bundle does not satisfy.

Canonical ABI layouts used below (sizes in bytes, checked against wasmtime by tests):

* string          = ptr:i32, len:i32                                      size 8,  align 4
* param           = name:string, description:string, type:u8, required:u8  size 20, align 4
* metadata        = name, description, version:string, params:list (ptr, len)  size 32, align 4
* value (variant) = discriminant:u8 @0, payload @8 (s64 / f64 / string / bool)  size 16, align 8
* argument        = name:string @0, value @8                               size 24, align 8
* result<string, string> = discriminant:u8 @0, string @4                   size 12, align 4

`describe` and `invoke` return more than one flat value, so both return a pointer to such a record.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import wasmtime
from llama_agent.runtime.tools.metadata import ToolExample, ToolMetadata, ToolParam

INTERFACE = "llama-agent:tool/tool@0.1.0"
PARAM_TYPES = {"string": 0, "integer": 1, "number": 2, "boolean": 3}
BEHAVIOURS = (
    "echo",
    "fail",
    "trap",
    "loop",
    "version",
    "slow",
    "grow",
    "recurse",
    "grow_table",
    "two_memories",
    "sleep",
    "sleep_describe",
    "sleep_if_long",
    "fresh",
    "fill",
    "fill_describe",
)
# How much memory the "fill" behaviour touches before it traps, in 64 KiB pages (64 MiB).
FILL_PAGES = 1024
# How long the "sleep" behaviours block in a WASI host call, far past any test's deadline.
SLEEP_NANOSECONDS = 60_000_000_000
# Iterations of the "slow" busy loop: three to five seconds on these machines.
SLOW_ITERATIONS = 5_000_000_000
VALUE_STRING_CASE = 3  # index of `string` in `variant value`
ARGUMENT_SIZE = 24
DATA_BASE = 16  # keep address 0 free so no static object lives at the null pointer

# The WIT types, written once for the outer component and once inside the shim.  `{pt}`, `{p}`,
# `{v}` name the types they refer to, which differ between the two places.
_PARAM_TYPE = '(enum "string" "integer" "number" "boolean")'
_PARAM = (
    '(record (field "name" string) (field "description" string) (field "type" {pt}) (field "required" bool))'
)
_METADATA = (
    '(record (field "name" string) (field "description" string) (field "version" string)'
    ' (field "params" (list {p})))'
)
_VALUE = '(variant (case "boolean" bool) (case "integer" s64) (case "number" f64) (case "string" string))'
_ARGUMENT = '(record (field "name" string) (field "value" {v}))'
_RESULT = "(result string (error string))"

# WASI imports for the "sleep" behaviours: a clock pollable and its blocking wait, lowered into
# core functions the module imports as "wasi" "subscribe" / "wasi" "block".
_WASI_SLEEP_IMPORTS = """
  (import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type (sub resource)))
    (export "[method]pollable.block" (func (param "self" (borrow 0))))))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (alias outer 1 $pollable (type))
    (export "pollable" (type (eq 0)))
    (export "subscribe-duration" (func (param "when" u64) (result (own 1))))))
  (core func $subscribe (canon lower (func $clock "subscribe-duration")))
  (core func $block (canon lower (func $poll "[method]pollable.block")))
  (core instance $wasi (export "subscribe" (func $subscribe)) (export "block" (func $block)))"""
_WASI_SLEEP_MODULE_IMPORTS = """
    (import "wasi" "subscribe" (func $subscribe (param i64) (result i32)))
    (import "wasi" "block" (func $block (param i32)))"""
_SLEEP = f"(call $block (call $subscribe (i64.const {SLEEP_NANOSECONDS})))"
# Grows memory by FILL_PAGES pages, writes every byte of them (so they are resident), then traps.
_FILL_AND_TRAP = (
    "(local $at i32)"
    f" (local.set $at (i32.shl (memory.grow (i32.const {FILL_PAGES})) (i32.const 16)))"
    f" (memory.fill (local.get $at) (i32.const 1) (i32.const {FILL_PAGES * 65536})) unreachable"
)

_COMPONENT = f"""(component
  {{imports}}
  {{core}}
  (core instance $core (instantiate $m {{instantiate_with}}))
  (alias core export $core "memory" (core memory $mem))
  (alias core export $core "cabi_realloc" (core func $realloc))

  (type $param-type {_PARAM_TYPE})
  (type $param {_PARAM.format(pt="$param-type")})
  (type $metadata {_METADATA.format(p="$param")})
  (type $value {_VALUE})
  (type $argument {_ARGUMENT.format(v="$value")})
  (func $describe (result $metadata)
    (canon lift (core func $core "describe") (memory $mem) (realloc $realloc) string-encoding=utf8))
  (func $invoke (param "args" (list $argument)) (result {_RESULT})
    (canon lift (core func $core "invoke") (memory $mem) (realloc $realloc) string-encoding=utf8))

  ;; Imports the types and functions, then exports them under their WIT names.  Types given to
  ;; `import` may only mention imported types; exported ones only exported types; hence the copies.
  (component $shim
    (type $pt0 {_PARAM_TYPE})
    (import "import-type-param-type" (type $pt (eq $pt0)))
    (type $p0 {_PARAM.format(pt="$pt")})
    (import "import-type-param" (type $p (eq $p0)))
    (type $md0 {_METADATA.format(p="$p")})
    (import "import-type-metadata" (type $md (eq $md0)))
    (type $v0 {_VALUE})
    (import "import-type-value" (type $v (eq $v0)))
    (type $a0 {_ARGUMENT.format(v="$v")})
    (import "import-type-argument" (type $a (eq $a0)))
    (import "import-func-describe" (func $describe (result $md)))
    (import "import-func-invoke" (func $invoke (param "args" (list $a)) (result {_RESULT})))
    (export $pt-out "param-type" (type $pt))
    (type $p1 {_PARAM.format(pt="$pt-out")})
    (export $p-out "param" (type $p1))
    (type $md1 {_METADATA.format(p="$p-out")})
    (export $md-out "metadata" (type $md1))
    (export $v-out "value" (type $v))
    (type $a1 {_ARGUMENT.format(v="$v-out")})
    (export $a-out "argument" (type $a1))
    (export "describe" (func $describe) (func (result $md-out)))
    (export "invoke" (func $invoke) (func (param "args" (list $a-out)) (result {_RESULT}))))

  (instance $tool (instantiate $shim
    (with "import-type-param-type" (type $param-type))
    (with "import-type-param" (type $param))
    (with "import-type-metadata" (type $metadata))
    (with "import-type-value" (type $value))
    (with "import-type-argument" (type $argument))
    (with "import-func-describe" (func $describe))
    (with "import-func-invoke" (func $invoke))))
  (export "{INTERFACE}" (instance $tool)))
"""

# Bump allocator: never frees (every call gets a fresh instance), grows memory when needed, and
# copies the old block when asked to reallocate.  `{{heap}}` is where the heap starts.
_REALLOC = """
    (global $heap (mut i32) (i32.const {heap}))
    (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32)
          (result i32)
      (local $ptr i32)
      ;; ptr = align_up(heap, align); heap = ptr + size
      (local.set $ptr (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
                               (i32.sub (i32.const 0) (local.get $align))))
      (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
      ;; grow by the missing number of 64 KiB pages; trap if the store's limits refuse
      (if (i32.gt_u (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
        (then (if (i32.eq (memory.grow (i32.sub (i32.shr_u (i32.add (global.get $heap) (i32.const 65535))
                                                           (i32.const 16))
                                                (memory.size)))
                          (i32.const -1))
                (then unreachable))))
      (if (local.get $old)
        (then (memory.copy (local.get $ptr) (local.get $old)
                           (select (local.get $old_size) (local.get $size)
                                   (i32.lt_u (local.get $old_size) (local.get $size))))))
      (local.get $ptr))"""

# invoke for "echo": walk the argument records; the first whose value has the `string` case is
# answered with ok(that string), pointing straight at the host-lowered bytes (no copy needed: the
# host lifts the result before anything else touches memory).  `{{ret}}` is a 12-byte result area.
_ECHO = f"""
    (func (export "invoke") (param $args i32) (param $count i32) (result i32)
      (local $end i32)
      (local.set $end (i32.add (local.get $args) (i32.mul (local.get $count) (i32.const {ARGUMENT_SIZE}))))
      (i32.store8 (i32.const {{ret}}) (i32.const 0))  ;; result case ok
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $args) (local.get $end)))
          (if (i32.eq (i32.load8_u offset=8 (local.get $args)) (i32.const {VALUE_STRING_CASE}))
            (then
              (i32.store offset=4 (i32.const {{ret}}) (i32.load offset=16 (local.get $args)))  ;; ptr
              (i32.store offset=8 (i32.const {{ret}}) (i32.load offset=20 (local.get $args)))  ;; len
              (return (i32.const {{ret}}))))
          (local.set $args (i32.add (local.get $args) (i32.const {ARGUMENT_SIZE})))
          (br $next)))
      (i32.store offset=4 (i32.const {{ret}}) (i32.const 0))  ;; ok("")
      (i32.store offset=8 (i32.const {{ret}}) (i32.const 0))
      (i32.const {{ret}}))"""


class _Data:
    """Static data laid out from DATA_BASE upwards, emitted as one active data segment."""

    def __init__(self) -> None:
        self.bytes = bytearray()

    def _place(self, blob: bytes, align: int) -> int:
        self.bytes.extend(b"\0" * (-(DATA_BASE + len(self.bytes)) % align))
        address = DATA_BASE + len(self.bytes)
        self.bytes.extend(blob)
        return address

    def string(self, text: str) -> bytes:
        """Store the UTF-8 text; return its (ptr, len) pair as it appears inside a record."""
        encoded = text.encode()
        return _u32(self._place(encoded, 1)) + _u32(len(encoded))

    def record(self, blob: bytes, align: int = 4) -> int:
        return self._place(blob, align)

    def segment(self) -> str:
        escaped = "".join(f"\\{byte:02x}" for byte in self.bytes)
        return f'(data (i32.const {DATA_BASE}) "{escaped}")'


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def _result(data: _Data, ok: bool, text: str) -> int:
    """A static result<string, string> record."""
    return data.record(bytes([0 if ok else 1, 0, 0, 0]) + data.string(text))


def tool_wat(
    name: str,
    version: str = "1.0.0",
    description: str = "a test tool",
    params: Sequence[tuple[str, str, bool]] = (("value", "string", True),),
    behaviour: str = "echo",
) -> str:
    """Component text for a tool whose `describe()` reports these fields and whose `invoke` does `behaviour`.

    `params` holds (name, type, required) with type one of string, integer, number, boolean.
    Behaviours: echo (ok(first string argument) or ok("")), fail (err("<name> failed on purpose")),
    trap (`unreachable`), loop (spins until the host's epoch deadline), version (ok("<name> <version>")),
    slow (busy for a few seconds, then like version), grow (a memory bomb: grows memory until refused,
    then traps), recurse (unbounded recursion), grow_table (grows a table until refused, then traps),
    two_memories (like version, from a component that instantiates a second core module with its own
    memory), sleep (blocks in a WASI `pollable.block` on a 60 s clock, then like version),
    sleep_describe (like echo, but `describe()` blocks that way first), sleep_if_long (like sleep if
    the first argument's string is over 3 bytes, else like version), fresh (grows its memory by a
    page: ok("fresh") in an instance that never ran, err("reused") in one that did), fill (grows its
    memory by FILL_PAGES pages and writes every byte of them, so that they are resident, then traps),
    fill_describe (like echo, but `describe()` does what fill does: the tool never loads).
    """
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour {behaviour!r}; choose one of {', '.join(BEHAVIOURS)}")
    data = _Data()
    param_records = b""
    for pname, ptype, required in params:
        if ptype not in PARAM_TYPES:
            raise ValueError(f"unknown parameter type {ptype!r}; choose one of {', '.join(PARAM_TYPES)}")
        param_records += (
            data.string(pname)
            + data.string(f"the {pname} parameter")
            + bytes([PARAM_TYPES[ptype], int(required), 0, 0])  # enum u8, bool u8, padding to 20
        )
    params_at = data.record(param_records)
    metadata_at = data.record(
        data.string(name)
        + data.string(description)
        + data.string(version)
        + _u32(params_at)
        + _u32(len(params))
    )

    if behaviour == "echo":
        invoke = _ECHO.format(ret=data.record(bytes(12)))
    elif behaviour in ("fail", "version"):
        answer = (
            _result(data, False, f"{name} failed on purpose")
            if behaviour == "fail"
            else _result(data, True, f"{name} {version}")
        )
        invoke = f'\n    (func (export "invoke") (param i32 i32) (result i32) (i32.const {answer}))'
    elif behaviour == "slow":  # busy for a while, then like "version"
        answer = _result(data, True, f"{name} {version}")
        invoke = (
            '\n    (func (export "invoke") (param i32 i32) (result i32) (local $i i64)'
            f" (local.set $i (i64.const {SLOW_ITERATIONS}))"
            " (loop $busy (local.set $i (i64.sub (local.get $i) (i64.const 1)))"
            " (br_if $busy (i64.ne (local.get $i) (i64.const 0))))"
            f" (i32.const {answer}))"
        )
    elif behaviour == "grow":  # a memory bomb: 16 MiB at a time until refused, then trap
        invoke = (
            '\n    (func (export "invoke") (param i32 i32) (result i32)'
            " (loop $more (br_if $more (i32.ne (memory.grow (i32.const 256)) (i32.const -1)))) unreachable)"
        )
    elif behaviour == "recurse":  # unbounded recursion: the stack overflows
        invoke = (
            "\n    (func $deeper (param i32) (result i32)"
            " (call $deeper (i32.add (local.get 0) (i32.const 1))))"
            '\n    (func (export "invoke") (param i32 i32) (result i32) (call $deeper (i32.const 0)))'
        )
    elif behaviour == "trap":
        invoke = '\n    (func (export "invoke") (param i32 i32) (result i32) unreachable)'
    elif behaviour == "grow_table":  # 64k elements (512 KiB of host memory) at a time until refused
        invoke = (
            '\n    (table $t 1 funcref)\n    (func (export "invoke") (param i32 i32) (result i32)'
            " (loop $more (br_if $more (i32.ne (table.grow $t (ref.null func) (i32.const 65536))"
            " (i32.const -1)))) unreachable)"
        )
    elif behaviour in ("two_memories", "sleep"):
        answer = _result(data, True, f"{name} {version}")
        nap = _SLEEP if behaviour == "sleep" else ""
        invoke = f'\n    (func (export "invoke") (param i32 i32) (result i32) {nap} (i32.const {answer}))'
    elif behaviour == "sleep_if_long":  # like "sleep" if the first argument is over 3 bytes, else "version"
        answer = _result(data, True, f"{name} {version}")
        invoke = (
            '\n    (func (export "invoke") (param i32 i32) (result i32)'
            f" (if (i32.gt_u (i32.load offset=20 (local.get 0)) (i32.const 3)) (then {_SLEEP}))"
            f" (i32.const {answer}))"
        )
    elif behaviour == "sleep_describe":
        invoke = _ECHO.format(ret=data.record(bytes(12)))
    elif behaviour == "fresh":  # memory.grow answers the size before: 1 page only in a new instance
        fresh, reused = _result(data, True, "fresh"), _result(data, False, "reused")
        invoke = (
            '\n    (func (export "invoke") (param i32 i32) (result i32)'
            " (if (result i32) (i32.eq (memory.grow (i32.const 1)) (i32.const 1))"
            f" (then (i32.const {fresh})) (else (i32.const {reused}))))"
        )
    elif behaviour == "fill":  # 64 MiB made resident, then a trap: what it held must not outlive the call
        invoke = f'\n    (func (export "invoke") (param i32 i32) (result i32) {_FILL_AND_TRAP})'
    elif behaviour == "fill_describe":
        invoke = _ECHO.format(ret=data.record(bytes(12)))
    else:  # loop: the epoch deadline interrupts it
        invoke = (
            '\n    (func (export "invoke") (param i32 i32) (result i32) (loop $spin (br $spin)) unreachable)'
        )

    heap = -(-(DATA_BASE + len(data.bytes)) // 8) * 8  # first 8-aligned address after the data
    sleeps = behaviour in ("sleep", "sleep_describe", "sleep_if_long")
    describe_nap = _SLEEP if behaviour == "sleep_describe" else ""
    if behaviour == "fill_describe":
        describe_nap = _FILL_AND_TRAP
    core = (
        "(core module $m"
        f"{_WASI_SLEEP_MODULE_IMPORTS if sleeps else ''}\n"
        '    (memory (export "memory") 1)\n'
        f"    {data.segment()}"
        f"{_REALLOC.format(heap=heap)}\n"
        f'    (func (export "describe") (result i32) {describe_nap} (i32.const {metadata_at}))'
        f"{invoke})"
    )
    if behaviour == "two_memories":
        core += (
            '\n  (core module $second (memory (export "memory") 1))\n  (core instance (instantiate $second))'
        )
    return _COMPONENT.format(
        imports=_WASI_SLEEP_IMPORTS if sleeps else "",
        core=core,
        instantiate_with='(with "wasi" (instance $wasi))' if sleeps else "",
    )


def tool_wasm(
    name: str,
    version: str = "1.0.0",
    description: str = "a test tool",
    params: Sequence[tuple[str, str, bool]] = (("value", "string", True),),
    behaviour: str = "echo",
) -> bytes:
    """The binary component for `tool_wat(...)` with the same arguments."""
    return bytes(wasmtime.wat2wasm(tool_wat(name, version, description, params, behaviour)))


# -- llama-agent:tool@0.2.0 -----------------------------------------------------------------------
#
# The 0.2.0 metadata adds bounds, choices and a default to each parameter and worked examples to
# the metadata; `invoke` is unchanged, so these components answer like the "echo" behaviour.
# Canonical ABI layouts (sizes in bytes):
#
# * option<f64>     = discriminant:u8 @0, f64 @8                                  size 16, align 8
# * option<value>   = discriminant:u8 @0, value @8                                size 24, align 8
# * param           = name @0, description @8, type:u8 @16, required:u8 @17, minimum @24,
#                     maximum @40, choices:list<string> @56, default-value @64    size 88, align 8
# * example         = request @0, arguments:list<argument> @8, result @16, answer @24  size 32, align 4
# * metadata        = name, description, version, params:list, examples:list      size 40, align 4

INTERFACE_V2 = "llama-agent:tool/tool@0.2.0"
VALUE_CASES = {bool: 0, int: 1, float: 2, str: 3}  # the cases of `variant value`, by Python type
PARAM_V2_SIZE = 88

_PARAM_V2 = (
    '(record (field "name" string) (field "description" string) (field "type" {pt}) (field "required" bool)'
    ' (field "minimum" (option f64)) (field "maximum" (option f64)) (field "choices" (list string))'
    ' (field "default-value" (option {v})))'
)
_EXAMPLE = (
    '(record (field "request" string) (field "arguments" (list {a})) (field "result" string)'
    ' (field "answer" string))'
)
_METADATA_V2 = (
    '(record (field "name" string) (field "description" string) (field "version" string)'
    ' (field "params" (list {p})) (field "examples" (list {e})))'
)

_COMPONENT_V2 = f"""(component
  {{core}}
  (core instance $core (instantiate $m))
  (alias core export $core "memory" (core memory $mem))
  (alias core export $core "cabi_realloc" (core func $realloc))

  (type $param-type {_PARAM_TYPE})
  (type $value {_VALUE})
  (type $param {_PARAM_V2.format(pt="$param-type", v="$value")})
  (type $argument {_ARGUMENT.format(v="$value")})
  (type $example {_EXAMPLE.format(a="$argument")})
  (type $metadata {_METADATA_V2.format(p="$param", e="$example")})
  (func $describe (result $metadata)
    (canon lift (core func $core "describe") (memory $mem) (realloc $realloc) string-encoding=utf8))
  (func $invoke (param "args" (list $argument)) (result {_RESULT})
    (canon lift (core func $core "invoke") (memory $mem) (realloc $realloc) string-encoding=utf8))

  (component $shim
    (type $pt0 {_PARAM_TYPE})
    (import "import-type-param-type" (type $pt (eq $pt0)))
    (type $v0 {_VALUE})
    (import "import-type-value" (type $v (eq $v0)))
    (type $p0 {_PARAM_V2.format(pt="$pt", v="$v")})
    (import "import-type-param" (type $p (eq $p0)))
    (type $a0 {_ARGUMENT.format(v="$v")})
    (import "import-type-argument" (type $a (eq $a0)))
    (type $e0 {_EXAMPLE.format(a="$a")})
    (import "import-type-example" (type $e (eq $e0)))
    (type $md0 {_METADATA_V2.format(p="$p", e="$e")})
    (import "import-type-metadata" (type $md (eq $md0)))
    (import "import-func-describe" (func $describe (result $md)))
    (import "import-func-invoke" (func $invoke (param "args" (list $a)) (result {_RESULT})))
    (export $pt-out "param-type" (type $pt))
    (export $v-out "value" (type $v))
    (type $p1 {_PARAM_V2.format(pt="$pt-out", v="$v-out")})
    (export $p-out "param" (type $p1))
    (type $a1 {_ARGUMENT.format(v="$v-out")})
    (export $a-out "argument" (type $a1))
    (type $e1 {_EXAMPLE.format(a="$a-out")})
    (export $e-out "example" (type $e1))
    (type $md1 {_METADATA_V2.format(p="$p-out", e="$e-out")})
    (export $md-out "metadata" (type $md1))
    (export "describe" (func $describe) (func (result $md-out)))
    (export "invoke" (func $invoke) (func (param "args" (list $a-out)) (result {_RESULT}))))

  (instance $tool (instantiate $shim
    (with "import-type-param-type" (type $param-type))
    (with "import-type-value" (type $value))
    (with "import-type-param" (type $param))
    (with "import-type-argument" (type $argument))
    (with "import-type-example" (type $example))
    (with "import-type-metadata" (type $metadata))
    (with "import-func-describe" (func $describe))
    (with "import-func-invoke" (func $invoke))))
  (export "{INTERFACE_V2}" (instance $tool)))
"""


def _value(data: _Data, value: bool | int | float | str) -> bytes:
    """A `variant value` (16 bytes): case, padding, payload."""
    case = VALUE_CASES[type(value)]
    if isinstance(value, str):
        payload = data.string(value)
    elif isinstance(value, float):
        payload = struct.pack("<d", value)
    else:
        payload = int(value).to_bytes(8, "little", signed=True)
    return bytes([case]) + bytes(7) + payload


def _option_f64(value: float | None) -> bytes:
    return bytes(16) if value is None else bytes([1]) + bytes(7) + struct.pack("<d", value)


def _param_v2(data: _Data, param: ToolParam) -> bytes:
    choices = b"".join(data.string(choice) for choice in param.choices)
    choices_at = data.record(choices) if choices else 0
    default = bytes(24) if param.default is None else bytes([1]) + bytes(7) + _value(data, param.default)
    return (
        data.string(param.name)
        + data.string(param.description)
        + bytes([PARAM_TYPES[param.type.value], int(param.required)])
        + bytes(6)
        + _option_f64(param.minimum)
        + _option_f64(param.maximum)
        + _u32(choices_at)
        + _u32(len(param.choices))
        + default
    )


def _example(data: _Data, example: ToolExample) -> bytes:
    arguments = b"".join(data.string(name) + _value(data, value) for name, value in example.arguments)
    arguments_at = data.record(arguments, align=8) if arguments else 0
    return (
        data.string(example.request)
        + _u32(arguments_at)
        + _u32(len(example.arguments))
        + data.string(example.result)
        + data.string(example.answer)
    )


def tool_wat_v2(metadata: ToolMetadata) -> str:
    """Component text for a 0.2.0 tool whose `describe()` returns exactly `metadata` (unchecked:
    it may be metadata the host refuses) and whose `invoke` is the "echo" behaviour."""
    data = _Data()
    params = b"".join(_param_v2(data, param) for param in metadata.params)
    params_at = data.record(params, align=8) if params else 0
    examples = b"".join(_example(data, example) for example in metadata.examples)
    examples_at = data.record(examples) if examples else 0
    metadata_at = data.record(
        data.string(metadata.name)
        + data.string(metadata.description)
        + data.string(metadata.version)
        + _u32(params_at)
        + _u32(len(metadata.params))
        + _u32(examples_at)
        + _u32(len(metadata.examples))
    )
    invoke = _ECHO.format(ret=data.record(bytes(12)))
    heap = -(-(DATA_BASE + len(data.bytes)) // 8) * 8
    core = (
        "(core module $m\n"
        '    (memory (export "memory") 1)\n'
        f"    {data.segment()}"
        f"{_REALLOC.format(heap=heap)}\n"
        f'    (func (export "describe") (result i32) (i32.const {metadata_at}))'
        f"{invoke})"
    )
    return _COMPONENT_V2.format(core=core)


def tool_wasm_v2(metadata: ToolMetadata) -> bytes:
    """The binary component for `tool_wat_v2(metadata)`."""
    return bytes(wasmtime.wat2wasm(tool_wat_v2(metadata)))
