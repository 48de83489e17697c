"""The Wasm host on tiny WAT components: compile cache, contract detection, load errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import wasmtime
from llama_agent.runtime.tools.limits import Limits
from llama_agent.runtime.tools.metadata import ParamType, ToolExample, ToolMetadata, ToolParam
from llama_agent.runtime.tools.policy import Grants
from llama_agent.runtime.tools.schema import ArgumentError
from llama_agent.runtime.wasm.contracts import NativeContract
from llama_agent.runtime.wasm.host import Invocation, LoadedTool, ToolLoadError, WasmHost
from llama_agent.runtime.wasm.workers import CancelToken
from llama_agent.services.tools.registry import Toolbox, UnknownTool

from tests.wat_tools import tool_wasm, tool_wasm_v2


@pytest.fixture
def host(tmp_path: Path) -> WasmHost:
    return WasmHost(tmp_path / "cache", Limits(timeout_seconds=1))


def test_second_load_comes_from_the_disk_cache(tmp_path: Path) -> None:
    wasm = tool_wasm("cached")
    first = WasmHost(tmp_path / "cache").load_bytes(wasm, Path("cached.wasm"))
    second = WasmHost(tmp_path / "cache").load_bytes(wasm, Path("cached.wasm"))
    assert (first.from_cache, second.from_cache) == (False, True)
    assert second.metadata == first.metadata


def test_a_corrupt_cache_entry_is_recompiled(tmp_path: Path) -> None:
    wasm = tool_wasm("corrupted")
    WasmHost(tmp_path / "cache").load_bytes(wasm, Path("corrupted.wasm"))
    for entry in (tmp_path / "cache" / "components").glob("*.cwasm"):
        entry.write_bytes(b"garbage")
    again = WasmHost(tmp_path / "cache").load_bytes(wasm, Path("corrupted.wasm"))
    assert again.from_cache is False
    assert again.metadata.name == "corrupted"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"not wasm at all", "not a valid WebAssembly component"),
        (bytes(wasmtime.wat2wasm("(module)")), "not a valid WebAssembly component"),
        (bytes(wasmtime.wat2wasm("(component)")), "not a tool"),
    ],
)
def test_files_that_are_not_tools_fail_to_load_with_a_reason(
    host: WasmHost, content: bytes, fragment: str
) -> None:
    with pytest.raises(ToolLoadError, match=fragment):
        host.load_bytes(content, Path("bad.wasm"))


def test_metadata_with_an_invalid_name_fails_to_load(host: WasmHost) -> None:
    with pytest.raises(ToolLoadError, match="invalid tool name"):
        host.load_bytes(tool_wasm("bad name"), Path("bad.wasm"))


def test_infinite_loop_times_out(host: WasmHost) -> None:
    tool = host.load_bytes(tool_wasm("spin", behaviour="loop"), Path("spin.wasm"))
    result = host.invoke(tool, {"value": "x"})
    assert result.is_error and result.timed_out
    assert "timed out after 1 s" in result.text
    assert 900 <= result.duration_ms < 5000


def test_name_clash_first_directory_then_file_name_wins(tmp_path: Path, host: WasmHost) -> None:
    """No file is trusted and none is named after the tool: discovery order decides."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "z.wasm").write_bytes(tool_wasm("same", version="1.0.0"))
    (second / "a.wasm").write_bytes(tool_wasm("same", version="2.0.0"))
    (second / "b.wasm").write_bytes(tool_wasm("same", version="3.0.0"))
    snapshot = Toolbox(host, [first, second], trusted_dirs=()).load_all()
    assert snapshot.tools["same"].loaded.metadata.version == "1.0.0"
    reasons = {failure.path.name: failure.error for failure in snapshot.failures}
    assert sorted(reasons) == ["a.wasm", "b.wasm"]
    assert all(f"already provided by {first / 'z.wasm'}" in error for error in reasons.values())
    assert "its directory comes first" in reasons["a.wasm"]


def test_name_clash_in_one_directory_the_file_name_sorts_first(tmp_path: Path, host: WasmHost) -> None:
    (tmp_path / "b.wasm").write_bytes(tool_wasm("same", version="2.0.0"))
    (tmp_path / "a.wasm").write_bytes(tool_wasm("same", version="1.0.0"))
    snapshot = Toolbox(host, [tmp_path], trusted_dirs=()).load_all()
    assert snapshot.tools["same"].loaded.path.name == "a.wasm"
    assert "its file name sorts first" in snapshot.failures[0].error


def test_name_clash_a_file_named_after_the_tool_wins(tmp_path: Path, host: WasmHost) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "aaa.wasm").write_bytes(tool_wasm("echo", version="1.0.0"))
    (second / "echo.wasm").write_bytes(tool_wasm("echo", version="2.0.0"))
    snapshot = Toolbox(host, [first, second], trusted_dirs=()).load_all()
    assert snapshot.tools["echo"].loaded.path == second / "echo.wasm"
    [failure] = snapshot.failures
    assert failure.path == first / "aaa.wasm"
    assert "a file named after the tool wins" in failure.error


def test_name_clash_a_trusted_directory_wins_over_an_untrusted_one(tmp_path: Path, host: WasmHost) -> None:
    """A file dropped into a watched directory cannot take over a trusted tool's name, even named
    after it and in a directory that comes first."""
    untrusted, trusted = tmp_path / "dropbox", tmp_path / "trusted"
    untrusted.mkdir()
    trusted.mkdir()
    (untrusted / "echo.wasm").write_bytes(tool_wasm("echo", version="6.6.6"))
    (trusted / "zzz.wasm").write_bytes(tool_wasm("echo", version="1.0.0"))
    snapshot = Toolbox(host, [untrusted, trusted], trusted_dirs=[trusted]).load_all()
    assert snapshot.tools["echo"].loaded.path == trusted / "zzz.wasm"
    [failure] = snapshot.failures
    assert failure.path == untrusted / "echo.wasm"
    assert "a trusted tools directory wins" in failure.error


class RecordingHost(WasmHost):
    def __init__(self, cache_dir: Path) -> None:
        super().__init__(cache_dir)
        self.calls: list[dict[str, Any]] = []

    def invoke(
        self,
        tool: LoadedTool,
        arguments: dict[str, Any],
        grants: Grants | None = None,
        cancel: CancelToken | None = None,
    ) -> Invocation:
        self.calls.append(arguments)
        return super().invoke(tool, arguments, grants, cancel)


def test_invalid_calls_never_reach_the_tool(tmp_path: Path) -> None:
    (tmp_path / "echo.wasm").write_bytes(tool_wasm("echo"))
    host = RecordingHost(tmp_path / "cache")
    toolbox = Toolbox(host, [tmp_path])
    toolbox.load_all()
    with pytest.raises(ArgumentError):
        toolbox.invoke_blocking("echo", {"value": 1})
    with pytest.raises(UnknownTool):
        toolbox.invoke_blocking("ohce", {"value": "x"})
    assert host.calls == []
    assert toolbox.invoke_blocking("echo", {"value": "x"}).invocation.text == "x"
    assert host.calls == [{"value": "x"}]


# -- llama-agent:tool@0.2.0 ---------------------------------------------------------------------

RICH = ToolMetadata(
    "rich",
    "every 0.2 field",
    "2.0.0",
    (
        ToolParam("text", "words", ParamType.STRING, True),
        ToolParam("count", "how many", ParamType.INTEGER, False, minimum=1, maximum=10, default=3),
        ToolParam("ratio", "", ParamType.NUMBER, False, minimum=-0.5, default=0.25),
        ToolParam("mode", "how", ParamType.STRING, False, choices=("fast", "ünïcode"), default="ünïcode"),
        ToolParam("loud", "shout?", ParamType.BOOLEAN, False, default=True),
    ),
    (
        ToolExample(
            "Say 'sample' four times, quietly.",
            (("text", "sample"), ("count", 4), ("ratio", 0.5), ("loud", False)),
            "sample sample sample sample",
            "It said: sample sample sample sample",
        ),
        ToolExample("Say 'x'.", (("text", "x"),), "", "Nothing came back."),
    ),
)


def test_a_0_2_tool_reports_bounds_choices_defaults_and_examples(host: WasmHost) -> None:
    tool = host.load_bytes(tool_wasm_v2(RICH), Path("rich.wasm"))
    assert tool.metadata == RICH
    assert isinstance(tool.contract, NativeContract) and tool.contract.minor == 2
    defaults = [param.default for param in tool.metadata.params]
    assert [type(value) for value in defaults] == [type(None), int, float, str, bool]


def test_a_0_1_tool_loads_with_none_of_the_0_2_fields(host: WasmHost) -> None:
    tool = host.load_bytes(tool_wasm("old"), Path("old.wasm"))
    assert isinstance(tool.contract, NativeContract) and tool.contract.minor == 1
    assert tool.metadata.params == (ToolParam("value", "the value parameter", ParamType.STRING, True),)
    assert tool.metadata.examples == ()


def test_a_0_2_tool_whose_default_breaks_its_bounds_fails_to_load(host: WasmHost) -> None:
    count = ToolParam("count", "", ParamType.INTEGER, False, minimum=1, maximum=10, default=11)
    broken = ToolMetadata("broken", "", "1", (count,))
    with pytest.raises(ToolLoadError, match="the default of parameter 'count' is 11, above the maximum 10"):
        host.load_bytes(tool_wasm_v2(broken), Path("broken.wasm"))


def test_an_omitted_argument_reaches_the_tool_as_its_default(tmp_path: Path) -> None:
    value = ToolParam("value", "", ParamType.STRING, False, default="the default")
    (tmp_path / "dflt.wasm").write_bytes(tool_wasm_v2(ToolMetadata("dflt", "", "1", (value,))))
    host = RecordingHost(tmp_path / "cache")
    toolbox = Toolbox(host, [tmp_path])
    toolbox.load_all()
    assert toolbox.invoke_blocking("dflt", {}).invocation.text == "the default"
    assert toolbox.invoke_blocking("dflt", {"value": "given"}).invocation.text == "given"
    assert host.calls == [{"value": "the default"}, {"value": "given"}]


def test_a_calls_peak_memory_is_measured_for_that_call_alone(tmp_path: Path) -> None:
    host = WasmHost(tmp_path / "cache", Limits(timeout_seconds=5), max_parallel_calls=1)
    try:
        fill = host.load_bytes(tool_wasm("fill", behaviour="fill"), Path("fill.wasm"))
        echo = host.load_bytes(tool_wasm("echo"), Path("echo.wasm"))
        filled = host.invoke(fill, {"value": "x"})
        worker = host.workers.pids()
        echoed = host.invoke(echo, {"value": "x"})
        assert host.workers.pids() == worker and len(worker) == 1  # the same worker process
    finally:
        host.close()
    assert filled.is_error and filled.peak_memory_bytes >= 64 * 2**20  # it made 64 MiB resident
    # The peak is reset for each call: the echo's is the worker's own size, not the fill's.
    assert 0 < echoed.peak_memory_bytes < filled.peak_memory_bytes - 48 * 2**20
    assert (filled.bytes_written, echoed.bytes_written) == (0, 0)  # no writable grant
