"""agent/run params: validated against a JSON Schema, so bad input names its field."""

from __future__ import annotations

from typing import Any

from pygls.exceptions import JsonRpcInvalidParams

from daemon.runtime.schema import ArgumentError, validate_arguments
from daemon.services.agent import AgentRequest

AGENT_RUN_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "minLength": 1},
        "tools": {"type": "array", "items": {"type": "string"}},
        "maxSteps": {"type": "integer", "minimum": 0, "maximum": 100},
        "maxTokens": {"type": "integer", "minimum": 1, "maximum": 32768},
        "temperature": {"type": "number", "minimum": 0, "maximum": 5},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
        "toolChoice": {"type": "string", "minLength": 1},
        "workDoneToken": {"type": ["string", "integer"]},
    },
    "required": ["prompt"],
    "additionalProperties": False,
}


def parse_agent_run(params: Any) -> tuple[AgentRequest, str | int | None]:
    """The request and its progress token; raises JsonRpcInvalidParams naming the bad field."""
    try:
        validate_arguments(AGENT_RUN_PARAMS, params)
    except ArgumentError as error:
        raise JsonRpcInvalidParams(f"agent/run: {error}", data={"field": error.field}) from error
    defaults = AgentRequest(prompt="")
    request = AgentRequest(
        prompt=params["prompt"],
        tools=tuple(params["tools"]) if "tools" in params else None,
        max_steps=params.get("maxSteps", defaults.max_steps),
        max_tokens=params.get("maxTokens", defaults.max_tokens),
        temperature=float(params.get("temperature", defaults.temperature)),
        seed=params.get("seed"),
        tool_choice=params.get("toolChoice", defaults.tool_choice),
    )
    return request, params.get("workDoneToken")
