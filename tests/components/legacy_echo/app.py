"""An echo tool built for the original exploration's world (llama-cpp:tool), as it shipped."""

from wit_world import WitWorld as World
from wit_world.imports.types import ToolMetadata, ToolParams, ToolResult, ToolUsage


class WitWorld(World):
    def get_metadata(self) -> ToolMetadata:
        return ToolMetadata(
            name="Echo",
            description="Echoes the given value back.",
            version="0.1.0",
            params=[ToolParams(name="value", description="What to echo", type="string", required=True)],
            usage=[ToolUsage(user="Please echo back 'hi'", assistent="USE_TOOL: Echo, value=hi")],
        )

    def execute(self, params: list[tuple[str, str]]) -> ToolResult:
        for name, value in params:
            if name == "value":
                return ToolResult(success=True, data=value, error=None)
        return ToolResult(success=False, data="", error="missing parameter 'value'")

    def run(self) -> None:
        return None
