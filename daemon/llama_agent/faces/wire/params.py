"""The custom methods' params, each validated against a JSON Schema, so bad input names its field.

A missing, null or empty-array `params` (Lua, hence Neovim, encodes `{}` as `[]`) is no params;
the same goes for `tools/invoke`'s `arguments`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llama_agent.common.errors import InvalidParams
from llama_agent.runtime.tools.schema import ArgumentError, validate_arguments
from llama_agent.services.agent.loop import AgentRequest
from llama_agent.services.consent.approvals import ACTIONS

TOOLS_LIST_PARAMS: dict[str, Any] = {"type": "object"}
TOOLS_INVOKE_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "arguments": {"type": "object"},
    },
    "required": ["name"],
}
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
        # A conversation to continue (agent/newSession made it), or "new" for the daemon to make one.
        "sessionId": {"type": "string", "minLength": 1, "maxLength": 200},
        "session": {"enum": ["new"]},
    },
    "required": ["prompt"],
    "additionalProperties": False,
}
AGENT_NEW_SESSION_PARAMS: dict[str, Any] = {"type": "object", "additionalProperties": False}
SESSION_ID_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {"sessionId": {"type": "string", "minLength": 1, "maxLength": 200}},
    "required": ["sessionId"],
    "additionalProperties": False,
}
GRANTS_LIST_PARAMS: dict[str, Any] = {"type": "object", "additionalProperties": False}
GRANTS_ANSWER_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 300},
        "action": {"enum": list(ACTIONS)},
    },
    "required": ["id", "action"],
    "additionalProperties": False,
}
GRANTS_REVOKE_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {"tool": {"type": "string", "minLength": 1, "maxLength": 200}},
    "required": ["tool"],
    "additionalProperties": False,
}


# Every custom request and its params' schema: what `initialize` advertises, what is validated.
CUSTOM_METHODS: dict[str, dict[str, Any]] = {
    "tools/list": TOOLS_LIST_PARAMS,
    "tools/invoke": TOOLS_INVOKE_PARAMS,
    "agent/run": AGENT_RUN_PARAMS,
    "agent/newSession": AGENT_NEW_SESSION_PARAMS,
    "agent/forget": SESSION_ID_PARAMS,
    "agent/history": SESSION_ID_PARAMS,
    "grants/list": GRANTS_LIST_PARAMS,
    "grants/answer": GRANTS_ANSWER_PARAMS,
    "grants/revoke": GRANTS_REVOKE_PARAMS,
}
# Every custom notification the daemon sends.
TOOLS_DID_CHANGE = "tools/didChange"
GRANTS_DID_CHANGE = "grants/didChange"  # the pending or approved grants changed: list them again
CUSTOM_NOTIFICATIONS = (TOOLS_DID_CHANGE, GRANTS_DID_CHANGE)


def parse_tools_list(params: Any) -> dict[str, Any]:
    return _validated("tools/list", TOOLS_LIST_PARAMS, params)


def parse_tools_invoke(params: Any) -> tuple[str, dict[str, Any]]:
    """The tool's name and its arguments (not yet checked against the tool's schema)."""
    body = _validated("tools/invoke", TOOLS_INVOKE_PARAMS, params, nested="arguments")
    return body["name"], body.get("arguments", {})


@dataclass(frozen=True)
class AgentRun:
    """An agent/run: the request, its progress token, and the conversation it belongs to."""

    request: AgentRequest
    token: str | int | None = None
    session_id: str | None = None  # continue this conversation
    new_session: bool = False  # start one


def parse_agent_run(params: Any) -> AgentRun:
    """The run asked for; raises InvalidParams naming the bad field."""
    params = _validated("agent/run", AGENT_RUN_PARAMS, params)
    if "sessionId" in params and "session" in params:
        raise InvalidParams(
            'invalid params for agent/run: give sessionId or session: "new", not both', "session"
        )
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
    return AgentRun(request, params.get("workDoneToken"), params.get("sessionId"), "session" in params)


def parse_new_session(params: Any) -> None:
    _validated("agent/newSession", AGENT_NEW_SESSION_PARAMS, params)


def parse_session_id(method: str, params: Any) -> str:
    """The `sessionId` of agent/forget or agent/history."""
    session_id: str = _validated(method, SESSION_ID_PARAMS, params)["sessionId"]
    return session_id


@dataclass(frozen=True)
class GrantAnswer:
    """grants/answer: the pending request (its id in grants/list) and the person's action."""

    request_id: str
    action: str


def parse_grants_list(params: Any) -> None:
    _validated("grants/list", GRANTS_LIST_PARAMS, params)


def parse_grants_answer(params: Any) -> GrantAnswer:
    body = _validated("grants/answer", GRANTS_ANSWER_PARAMS, params)
    return GrantAnswer(body["id"], body["action"])


def parse_grants_revoke(params: Any) -> str:
    """The name of the tool whose approvals to drop."""
    tool: str = _validated("grants/revoke", GRANTS_REVOKE_PARAMS, params)["tool"]
    return tool


def grants_view_client(options: Any) -> bool:
    """Whether the client's `initializationOptions` say it shows pending grant requests itself
    (`{"grantsView": true}`): then it is not asked about them with window/showMessageRequest.
    Anything else there is not ours to judge, and is ignored."""
    return isinstance(options, dict) and options.get("grantsView") is True


def _validated(method: str, schema: dict[str, Any], params: Any, nested: str | None = None) -> dict[str, Any]:
    """`params` as an object that matches `schema`, an absent value (and the `nested` field's)
    read as an empty object."""
    if _nothing(params):
        params = {}
    if nested is not None and isinstance(params, dict) and nested in params and _nothing(params[nested]):
        params = {**params, nested: {}}
    try:
        validate_arguments(schema, params)
    except ArgumentError as error:
        raise InvalidParams(f"invalid params for {method}: {error}", error.field) from error
    return dict(params)


def _nothing(value: Any) -> bool:
    return value is None or value == []
