"""The peer in the invoke benchmark: an MCP server (FastMCP, stdio) with an echo tool in plain Python."""

from mcp.server.fastmcp import FastMCP

server = FastMCP("echo-peer", log_level="WARNING")


@server.tool()
def echo(value: str) -> str:
    """Returns the given value unchanged."""
    return value


if __name__ == "__main__":
    server.run("stdio")
