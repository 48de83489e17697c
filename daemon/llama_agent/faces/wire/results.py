"""Service objects to JSON-RPC payloads. Tool results take the shape of MCP's."""

from __future__ import annotations

from typing import Any

from llama_agent.runtime.models.backend import ModelIdentity
from llama_agent.runtime.tools.limits import Limits
from llama_agent.runtime.tools.policy import Grants
from llama_agent.services.agent.history import AgentStep, Conversation
from llama_agent.services.agent.loop import AgentResult, RunTimings
from llama_agent.services.consent.approvals import (
    ApprovedGrants,
    GrantsState,
    PendingRequest,
    pending_message,
    prompt_message,
    raised_limits,
    request_id,
)
from llama_agent.services.tools.registry import CallResult, LoadFailure, Tool, ToolSetChange

JsonObject = dict[str, Any]


def tool_to_wire(tool: Tool) -> JsonObject:
    loaded = tool.loaded
    metadata = loaded.metadata
    wire: JsonObject = {
        "name": metadata.name,
        "description": metadata.description,
        "version": metadata.version,
        "inputSchema": tool.input_schema,
        "world": loaded.contract.world,
        "path": str(loaded.path),
        "grants": tool.grants.to_wire(),
        "policyError": tool.policy_error,
        "grantedBy": tool.granted_by,
        "requestedGrants": requested_grants_to_wire(tool.pending) if tool.pending else None,
        "grantsPending": pending_message(tool.pending) if tool.pending else None,
    }
    if metadata.examples:
        wire["examples"] = [
            {"request": e.request, "arguments": dict(e.arguments), "result": e.result, "answer": e.answer}
            for e in metadata.examples
        ]
    return wire


def requested_grants_to_wire(request: PendingRequest) -> JsonObject:
    """What a tool's policy asks for and nobody has approved; `workspace` is the mode it asks the
    client's workspace in, which shows under `dirs` only once there is one."""
    return {**request.grants.to_wire(), "workspace": request.workspace}


def grants_to_wire(state: GrantsState) -> JsonObject:
    """grants/list's result: the requests waiting for the person, and the approved ones."""
    return {
        "pending": [pending_to_wire(r, request_id(r) in state.denied) for r in state.pending],
        "approved": [approved_to_wire(approved) for approved in state.approved],
    }


def pending_to_wire(request: PendingRequest, denied: bool) -> JsonObject:
    """A pending request, as exactly as it asks (its paths as they are: clients need the real ones;
    `message` is display text, made visible)."""
    return {
        "id": request_id(request),
        **_granted(request.grants, request.defaults, request.workspace),
        "tool": request.name,
        "message": prompt_message(request),
        "denied": denied,
    }


def approved_to_wire(approved: ApprovedGrants) -> JsonObject:
    return {
        "tool": approved.tool,
        "scope": approved.scope,
        **_granted(approved.grants, approved.defaults, approved.workspace),
    }


# Limits by their wire names (as in a tool's `grants`).
_LIMIT_NAMES = {
    "timeout_seconds": "timeoutSeconds",
    "memory_bytes": "memoryBytes",
    "memories": "memories",
    "output_bytes": "outputBytes",
    "write_bytes": "writeBytes",
}


def _granted(grants: Grants, defaults: Limits, workspace: str | None) -> JsonObject:
    limits = raised_limits(grants.limits, defaults)
    return {
        "dirs": [{"path": str(d.host), "mode": d.mode, "guest": d.guest} for d in grants.dirs],
        "env": list(grants.env),
        "limits": {_LIMIT_NAMES.get(name, name): value for name, value in limits.items()},
        "workspace": workspace,
    }


def failure_to_wire(failure: LoadFailure) -> JsonObject:
    return {"path": str(failure.path), "error": failure.error}


def call_result_to_wire(result: CallResult) -> JsonObject:
    invocation = result.invocation
    metadata = result.tool.loaded.metadata
    return {
        "content": [{"type": "text", "text": text} for text in result.texts()],
        "isError": invocation.is_error,
        "stdout": invocation.stdout,
        "stderr": invocation.stderr,
        "truncated": invocation.truncated,
        "timedOut": invocation.timed_out,
        "durationMs": round(invocation.duration_ms, 3),
        "tool": {"name": metadata.name, "version": metadata.version},
    }


def change_to_wire(change: ToolSetChange) -> JsonObject:
    return {
        "added": list(change.added),
        "removed": list(change.removed),
        "changed": list(change.changed),
        "failed": [failure_to_wire(failure) for failure in change.failed],
    }


def step_to_wire(step: AgentStep) -> JsonObject:
    return {"tool": step.tool, "arguments": step.arguments, "result": step.result, "isError": step.is_error}


def agent_result_to_wire(result: AgentResult) -> JsonObject:
    return {
        "answer": result.answer,
        "steps": [step_to_wire(step) for step in result.steps],
        "usage": {
            "promptTokens": result.prompt_tokens,
            "completionTokens": result.completion_tokens,
            "cachedPromptTokens": result.cached_prompt_tokens,
            "historyTurns": result.history_turns,
        },
        "timings": timings_to_wire(result.timings),
        "stopReason": result.stop_reason,
        "promptFormat": result.prompt_format,
        "model": model_to_wire(result.model) if result.model else None,
    }


def conversation_to_wire(conversation: Conversation) -> JsonObject:
    """agent/history's result: every turn on record, oldest first, and which of them later
    prompts may still show (from `windowStart` on: the older ones were dropped to fit)."""
    return {
        "sessionId": conversation.id,
        "windowStart": conversation.window_start,
        "turns": [
            {
                "request": turn.request,
                "outcome": turn.outcome,
                "answer": turn.answer,
                "steps": [step_to_wire(step) for step in turn.steps],
            }
            for turn in conversation.turns
        ],
    }


def model_to_wire(model: ModelIdentity) -> JsonObject:
    return {"backend": model.backend, "name": model.name, "baseUrl": model.base_url}


def timings_to_wire(timings: RunTimings) -> JsonObject:
    """Milliseconds, as llama-server reports them; `firstTokenMs` is null when no token came."""

    def ms(seconds: float) -> float:
        return round(seconds * 1000, 1)

    return {
        "firstTokenMs": None if timings.first_token is None else ms(timings.first_token),
        "routingMs": ms(timings.routing),
        "promptMs": ms(timings.prompt),
        "generationMs": ms(timings.generation),
    }
