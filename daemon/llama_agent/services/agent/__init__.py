"""The agent: its loop of turns, the prompts, routing a request to tools, argument snapping."""
