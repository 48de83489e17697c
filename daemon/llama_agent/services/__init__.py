"""Services layer: tool registry and invocation, the agent loop. Protocol-agnostic."""
