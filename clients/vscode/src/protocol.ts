// The daemon's custom JSON-RPC methods, typed, over any connection that can send requests and
// receive notifications and progress: vscode-languageclient's LanguageClient in the editor,
// a bare vscode-jsonrpc MessageConnection in the tests. No `vscode` import here.

import {
    CancellationToken,
    Disposable,
    NotificationHandler,
    NotificationType,
    ProgressToken,
    ProgressType,
    RequestType,
    ResponseError,
} from 'vscode-jsonrpc';

export type JsonObject = { [key: string]: unknown };

export interface JsonSchema {
    type?: string | string[];
    description?: string;
    enum?: unknown[];
    properties?: { [name: string]: JsonSchema };
    required?: string[];
    items?: JsonSchema;
    default?: unknown;
    minimum?: number;
    maximum?: number;
    [key: string]: unknown;
}

export interface DirGrant {
    host: string;
    guest: string;
    mode: string;
}

export interface Grants {
    timeoutSeconds?: number;
    memoryBytes?: number;
    outputBytes?: number;
    dirs?: DirGrant[];
    env?: string[];
    network?: boolean;
}

export interface ToolInfo {
    name: string;
    description: string;
    version: string;
    inputSchema: JsonSchema;
    world?: string;
    path?: string;
    grants?: Grants;
    policyError?: string | null;
    examples?: { request: string; arguments: Record<string, unknown>; result: string; answer: string }[];
}

export interface LoadFailure {
    path: string;
    error: string;
}

export interface ToolsListResult {
    tools: ToolInfo[];
    failed: LoadFailure[];
}

export interface ToolsInvokeParams {
    name: string;
    arguments: JsonObject;
}

export interface ToolsInvokeResult {
    content: { type: string; text: string }[];
    isError: boolean;
    stdout?: string;
    stderr?: string;
    truncated?: boolean;
    timedOut?: boolean;
    durationMs?: number;
    tool?: { name: string; version: string };
}

export interface AgentRunParams {
    prompt: string;
    tools?: string[];
    maxSteps?: number;
    maxTokens?: number;
    temperature?: number;
    seed?: number;
    /** 'auto' (default), 'required' (the first turn calls a tool), 'none', or a tool name. */
    toolChoice?: string;
    workDoneToken?: ProgressToken;
    /** A conversation to continue (from agent/newSession); not with `session`. */
    sessionId?: string;
    /** 'new': the daemon starts a conversation and returns its id. */
    session?: 'new';
}

export interface AgentStep {
    tool: string;
    arguments: JsonObject;
    result: string;
    isError: boolean;
}

export interface AgentRunResult {
    answer: string;
    steps: AgentStep[];
    usage: { promptTokens: number; completionTokens: number; cachedPromptTokens?: number; historyTurns?: number };
    timings?: AgentRunTimings;
    stopReason: 'answer' | 'maxSteps' | 'maxTokens' | string;
    promptFormat?: string;
    /** Which backend and model answered (older daemons leave it out). */
    model?: RunModel;
    /** The conversation the run belongs to; null without one (older daemons leave it out). */
    sessionId?: string | null;
}

/** `llama`: the daemon's in-process llama.cpp model; `openai`: an OpenAI-compatible server. */
export type ModelBackend = 'llama' | 'openai';

/** The `model` of an agent/run result: the backend and model that answered. */
export interface RunModel {
    backend: ModelBackend | string;
    name: string;
    /** The server's base URL (openai backend); null for llama. */
    baseUrl: string | null;
}

/** `capabilities.experimental.llamaAgent.model` of initialize: what the daemon was configured with. */
export interface ConfiguredModel {
    backend: ModelBackend | string;
    /** null: the default (llama: the embedded model; openai: the server's only model). */
    name: string | null;
    baseUrl: string | null;
}

/** `capabilities.experimental.llamaAgent` of the initialize result. */
export interface LlamaAgentCapabilities {
    methods?: string[];
    notifications?: string[];
    /** Older daemons leave it out. */
    model?: ConfiguredModel;
    [key: string]: unknown;
}

/** Where a run's time went, in milliseconds (older daemons leave it out). */
export interface AgentRunTimings {
    firstTokenMs: number | null;
    routingMs: number;
    promptMs: number;
    generationMs: number;
}

export interface ToolsDidChangeParams {
    added: string[];
    removed: string[];
    changed: string[];
    failed: LoadFailure[];
}

/** The `llamaAgent` object of a `$/progress` report. */
export type AgentEvent =
    | { event: 'text'; text: string }
    | { event: 'toolCall'; step: number; tool: string; arguments: JsonObject }
    | { event: 'toolResult'; step: number; tool: string; result: string; isError: boolean };

/** A `$/progress` value of an agent run: LSP's work-done progress plus the `llamaAgent` event. */
export type RunProgressValue =
    | { kind: 'begin'; title: string; message?: string; cancellable?: boolean }
    | { kind: 'report'; message?: string; llamaAgent?: AgentEvent }
    | { kind: 'end'; message?: string };

export const ToolsListRequest = new RequestType<JsonObject, ToolsListResult, void>('tools/list');
export const ToolsInvokeRequest = new RequestType<ToolsInvokeParams, ToolsInvokeResult, void>('tools/invoke');
export const AgentRunRequest = new RequestType<AgentRunParams, AgentRunResult, void>('agent/run');
export const ToolsDidChangeNotification = new NotificationType<ToolsDidChangeParams>('tools/didChange');
export const RunProgressType = new ProgressType<RunProgressValue>();

/** JSON-RPC error codes the daemon answers with. */
export const ErrorCodes = {
    InvalidParams: -32602,
    RequestCancelled: -32800,
    ModelUnavailable: -32010,
} as const;

/** What both LanguageClient and a vscode-jsonrpc MessageConnection offer. */
export interface AgentConnection {
    sendRequest<P, R, E>(type: RequestType<P, R, E>, params: P, token?: CancellationToken): Promise<R>;
    onNotification<P>(type: NotificationType<P>, handler: NotificationHandler<P>): Disposable;
    onProgress<P>(type: ProgressType<P>, token: ProgressToken, handler: NotificationHandler<P>): Disposable;
}

let runCounter = 0;

/** A fresh `workDoneToken` for one agent run. */
export function newRunToken(): string {
    runCounter += 1;
    return `llama-agent-run-${process.pid}-${Date.now()}-${runCounter}`;
}

export function listTools(connection: AgentConnection, token?: CancellationToken): Promise<ToolsListResult> {
    return connection.sendRequest(ToolsListRequest, {}, token);
}

export function invokeTool(
    connection: AgentConnection,
    name: string,
    args: JsonObject,
    token?: CancellationToken,
): Promise<ToolsInvokeResult> {
    return connection.sendRequest(ToolsInvokeRequest, { name, arguments: args }, token);
}

/**
 * Runs the agent with a fresh `workDoneToken` and hands every `$/progress` value of the run to
 * `onProgress` as it arrives. Cancelling `token` sends `$/cancelRequest`; the daemon then
 * answers -32800 and the promise rejects with that ResponseError.
 */
export async function runAgent(
    connection: AgentConnection,
    params: Omit<AgentRunParams, 'workDoneToken'>,
    onProgress: (value: RunProgressValue) => void,
    token?: CancellationToken,
): Promise<AgentRunResult> {
    const workDoneToken = newRunToken();
    const listener = connection.onProgress(RunProgressType, workDoneToken, onProgress);
    try {
        return await connection.sendRequest(AgentRunRequest, { ...params, workDoneToken }, token);
    } finally {
        listener.dispose();
    }
}

export function onToolsDidChange(
    connection: AgentConnection,
    handler: (change: ToolsDidChangeParams) => void,
): Disposable {
    return connection.onNotification(ToolsDidChangeNotification, handler);
}

/** The text a tools/invoke result carries: its `content` texts, in order. */
export function resultText(result: ToolsInvokeResult): string {
    return result.content
        .filter((part) => part.type === 'text')
        .map((part) => part.text)
        .join('\n');
}

/** A `model` object of initialize or agent/run, checked; undefined when absent or malformed (older daemons). */
export function modelInfo(value: unknown): ConfiguredModel | undefined {
    if (typeof value !== 'object' || value === null) {
        return undefined;
    }
    const { backend, name, baseUrl } = value as { [key: string]: unknown };
    if (typeof backend !== 'string' || !(name == null || typeof name === 'string') || !(baseUrl == null || typeof baseUrl === 'string')) {
        return undefined;
    }
    return { backend, name: name ?? null, baseUrl: baseUrl ?? null };
}

export function isCancelled(error: unknown): boolean {
    return error instanceof ResponseError
        ? error.code === ErrorCodes.RequestCancelled
        : (error as { code?: number } | undefined)?.code === ErrorCodes.RequestCancelled;
}

export function errorMessage(error: unknown): string {
    if (error instanceof Error) {
        return error.message;
    }
    return String(error);
}
