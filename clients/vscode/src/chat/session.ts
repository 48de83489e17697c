// One chat with the agent, whatever shows it (the Chat view's participant, the webview panel):
// a daemon conversation (agent/newSession, then agent/run with its sessionId, agent/forget), each
// run's `$/progress` turned into typed events, the daemon's questions about writes asked in the
// chat, and the run's end as an outcome: the answer with its model and tokens, a cancellation,
// or the daemon's error. No `vscode` import here.

import { CancellationToken, RequestType, ResponseError } from 'vscode-jsonrpc';
import { describeModel } from '../format';
import {
    AgentConnection,
    AgentRunResult,
    ConfiguredModel,
    errorMessage,
    isCancelled,
    JsonObject,
    modelInfo,
    RunProgressValue,
    runAgent,
} from '../protocol';
import { AnswerStream } from './answerStream';
import { ConsentBroker, ConsentQuestion } from './consent';

export const NewSessionRequest = new RequestType<JsonObject, { sessionId: string }, void>('agent/newSession');
export const ForgetRequest = new RequestType<{ sessionId: string }, { forgotten: boolean }, void>('agent/forget');

/** What happens during a run, in order. */
export type ChatEvent =
    /** More of the answer's text (decoded from the model's turn). */
    | { kind: 'answer'; text: string }
    | { kind: 'toolCall'; step: number; tool: string; arguments: JsonObject; paths: string[] }
    | { kind: 'toolResult'; step: number; tool: string; result: string; isError: boolean }
    /** The daemon asks whether a call may write: answer with `ChatSession.answer(id, action)`. */
    | { kind: 'question'; id: string; message: string; actions: string[] }
    /** The question was answered (`answer`), or nobody will (undefined: the run ended first). */
    | { kind: 'questionClosed'; id: string; answer: string | undefined };

export interface ChatTurn {
    /** The whole answer, as the daemon's result has it. */
    answer: string;
    /** What the `answer` events carried (when it differs from `answer`, the result is right). */
    streamed: string;
    stopReason: string;
    toolCalls: number;
    model?: ConfiguredModel;
    usage: AgentRunResult['usage'];
    sessionId?: string;
}

export interface ChatError {
    message: string;
    /** The daemon's JSON-RPC error code, when it answered with one. */
    code?: number;
}

export type ChatOutcome =
    | { kind: 'answered'; turn: ChatTurn }
    | { kind: 'cancelled' }
    | { kind: 'failed'; error: ChatError };

export interface ChatDeps {
    /** The running daemon, started if needed; undefined when it cannot start (the user was told). */
    connect(): Promise<AgentConnection | undefined>;
    /** Routes the daemon's questions about writes here while a run goes on. */
    broker?: ConsentBroker;
    /** `maxSteps` of each run. */
    maxSteps(): number;
}

/** Argument names that hold a path (as the bundled tools and most MCP tools name them). */
const PATH_ARGUMENT = /(^|_)(path|paths|file|files|filename|dir|directory|folder|dest|destination|src|source|target)$/i;

/** The paths a call names: its path-like arguments' strings. */
export function toolPaths(args: JsonObject): string[] {
    const paths: string[] = [];
    for (const [name, value] of Object.entries(args)) {
        if (!PATH_ARGUMENT.test(name)) {
            continue;
        }
        for (const item of Array.isArray(value) ? value : [value]) {
            if (typeof item === 'string' && item.length > 0 && item.length <= 4096) {
                paths.push(item);
            }
        }
    }
    return paths;
}

/** The line shown at the end of a turn: which model answered, its tokens, its calls and why it stopped. */
export function turnFooter(turn: ChatTurn): string {
    const parts = [turn.model ? describeModel(turn.model) : 'model unknown'];
    parts.push(`${turn.usage.promptTokens} prompt + ${turn.usage.completionTokens} completion tokens`);
    parts.push(`${turn.toolCalls} tool call${turn.toolCalls === 1 ? '' : 's'}`);
    if (turn.stopReason !== 'answer') {
        parts.push(`stopped: ${turn.stopReason}`);
    }
    return parts.join(' · ');
}

/** An error for a person: the daemon's message and its code. */
export function describeError(error: ChatError): string {
    return error.code === undefined ? error.message : `${error.message} (error ${error.code})`;
}

export function chatError(error: unknown): ChatError {
    const code = error instanceof ResponseError ? error.code : (error as { code?: unknown } | undefined)?.code;
    return { message: errorMessage(error), code: typeof code === 'number' ? code : undefined };
}

/** Turns one run's `$/progress` values into events. */
export class RunEvents {
    streamed = '';
    private turn = new AnswerStream();

    constructor(private readonly emit: (event: ChatEvent) => void) {}

    feed(value: RunProgressValue): void {
        const event = value.kind === 'report' ? value.llamaAgent : undefined;
        if (!event || typeof event !== 'object') {
            return;
        }
        switch (event.event) {
            case 'text': {
                const text = typeof event.text === 'string' ? this.turn.feed(event.text) : '';
                if (text) {
                    this.streamed += text;
                    this.emit({ kind: 'answer', text });
                }
                return;
            }
            case 'toolCall': {
                const args = typeof event.arguments === 'object' && event.arguments !== null ? event.arguments : {};
                this.turn = new AnswerStream();
                this.emit({ kind: 'toolCall', step: event.step, tool: String(event.tool), arguments: args, paths: toolPaths(args) });
                return;
            }
            case 'toolResult':
                this.turn = new AnswerStream();
                this.emit({
                    kind: 'toolResult',
                    step: event.step,
                    tool: String(event.tool),
                    result: String(event.result),
                    isError: event.isError === true,
                });
                return;
        }
    }
}

export class ChatSession {
    /** The daemon conversation; undefined until the first run (and after a restart of the daemon). */
    sessionId: string | undefined;
    private connection: AgentConnection | undefined;
    private readonly pending = new Map<string, (answer: string | undefined) => void>();
    private questions = 0;
    private busy = false;

    constructor(private readonly deps: ChatDeps) {}

    get running(): boolean {
        return this.busy;
    }

    /** Runs `prompt` in this chat's conversation; events go to `onEvent` as they happen. */
    async run(prompt: string, onEvent: (event: ChatEvent) => void, token?: CancellationToken): Promise<ChatOutcome> {
        if (this.busy) {
            return { kind: 'failed', error: { message: 'A run is already going on in this chat: wait for it or stop it.' } };
        }
        this.busy = true;
        const consent = this.deps.broker?.activate((question) => this.ask(question, onEvent));
        const cancelled = token?.onCancellationRequested(() => this.closeQuestions());
        try {
            return await this.runInSession(prompt, onEvent, token);
        } finally {
            cancelled?.dispose();
            consent?.dispose();
            this.closeQuestions();
            this.busy = false;
        }
    }

    /** Answers the pending question `id` with `action`; false when there is no such question. */
    answer(id: string, action: string | undefined): boolean {
        const resolve = this.pending.get(id);
        if (!resolve) {
            return false;
        }
        this.pending.delete(id);
        resolve(action);
        return true;
    }

    /** Ends the daemon conversation: the next run starts a new one. */
    async forget(): Promise<void> {
        const sessionId = this.sessionId;
        const connection = this.connection;
        this.sessionId = undefined;
        if (sessionId !== undefined && connection !== undefined) {
            try {
                await connection.sendRequest(ForgetRequest, { sessionId });
            } catch {
                // the daemon restarted, or forgot it already
            }
        }
    }

    private async runInSession(prompt: string, onEvent: (event: ChatEvent) => void, token?: CancellationToken): Promise<ChatOutcome> {
        const connection = await this.deps.connect();
        if (!connection) {
            return { kind: 'failed', error: { message: 'The llama-agent daemon is not running: see the "Llama Agent" log.' } };
        }
        if (connection !== this.connection) {
            // Conversations belong to the daemon's connection: a new daemon knows none.
            this.connection = connection;
            this.sessionId = undefined;
        }
        const events = new RunEvents(onEvent);
        try {
            if (this.sessionId === undefined) {
                this.sessionId = (await connection.sendRequest(NewSessionRequest, {}, token)).sessionId;
            }
            if (token?.isCancellationRequested) {
                return { kind: 'cancelled' };
            }
            const params = { prompt, maxSteps: this.deps.maxSteps(), sessionId: this.sessionId };
            const result = await runAgent(connection, params, (value) => events.feed(value), token);
            if (!result) {
                // vscode-languageclient resolves a request it cancelled with nothing.
                return { kind: 'cancelled' };
            }
            if (!events.streamed && result.answer) {
                onEvent({ kind: 'answer', text: result.answer });
            }
            return {
                kind: 'answered',
                turn: {
                    answer: result.answer,
                    streamed: events.streamed || result.answer,
                    stopReason: result.stopReason,
                    toolCalls: result.steps.length,
                    model: modelInfo(result.model),
                    usage: result.usage,
                    sessionId: this.sessionId,
                },
            };
        } catch (error) {
            if (isCancelled(error) || token?.isCancellationRequested) {
                return { kind: 'cancelled' };
            }
            return { kind: 'failed', error: chatError(error) };
        }
    }

    private ask(question: ConsentQuestion, onEvent: (event: ChatEvent) => void): Promise<string | undefined> {
        this.questions += 1;
        const id = `q${this.questions}`;
        return new Promise((resolve) => {
            this.pending.set(id, (answer) => {
                onEvent({ kind: 'questionClosed', id, answer });
                resolve(answer);
            });
            onEvent({ kind: 'question', id, message: question.message, actions: question.actions });
        });
    }

    /** Nobody will answer the pending questions (the run ended or was stopped): each is a refusal. */
    private closeQuestions(): void {
        for (const id of [...this.pending.keys()]) {
            this.answer(id, undefined);
        }
    }
}
