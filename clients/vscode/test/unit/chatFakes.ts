// A daemon connection for the chat tests: agent/newSession and agent/forget answered, and each
// agent/run played from a script of `$/progress` values (with the daemon's questions on the way)
// and its result, or its error. What the tests sent is recorded.

import { CancellationToken, Disposable, ResponseError } from 'vscode-jsonrpc';
import type { AgentConnection, AgentRunResult, RunProgressValue } from '../../src/protocol';
import { CALL_ANSWERS, ConsentBroker, MessageAction } from '../../src/chat/consent';

export type RunStep =
    | { progress: RunProgressValue }
    /** The daemon asks (window/showMessageRequest) and waits for the answer. */
    | { ask: string; actions?: string[] }
    /** Waits until the run is cancelled, then rejects as the daemon does (-32800). */
    | { waitForCancel: true };

export interface ScriptedRun {
    steps: RunStep[];
    result?: Partial<AgentRunResult>;
    error?: ResponseError<unknown>;
}

export const text = (piece: string): RunProgressValue => ({ kind: 'report', message: '…', llamaAgent: { event: 'text', text: piece } });
export const toolCall = (step: number, tool: string, args: Record<string, unknown>): RunProgressValue => ({
    kind: 'report',
    message: `calling ${tool}`,
    llamaAgent: { event: 'toolCall', step, tool, arguments: args },
});
export const toolResult = (step: number, tool: string, result: string, isError = false): RunProgressValue => ({
    kind: 'report',
    message: `${tool} result`,
    llamaAgent: { event: 'toolResult', step, tool, result, isError },
});
/** An answer turn as the model writes it, cut into pieces of `size` characters. */
export function answerTurn(answer: string, size = 5): RunProgressValue[] {
    const turn = JSON.stringify({ answer });
    const pieces: RunProgressValue[] = [];
    for (let i = 0; i < turn.length; i += size) {
        pieces.push(text(turn.slice(i, i + size)));
    }
    return pieces;
}

export const RESULT: AgentRunResult = {
    answer: 'done',
    steps: [],
    usage: { promptTokens: 120, completionTokens: 7 },
    stopReason: 'answer',
    model: { backend: 'llama', name: 'gemma-3-270m.gguf', baseUrl: null },
};

export class FakeDaemon implements AgentConnection {
    readonly requests: { method: string; params: any }[] = [];
    readonly answers: (MessageAction | null)[] = [];
    private readonly progress = new Map<string | number, (value: any) => void>();
    private sessions = 0;

    constructor(
        private readonly runs: ScriptedRun[],
        private readonly broker?: ConsentBroker,
    ) {}

    onNotification(): Disposable {
        return { dispose: () => undefined };
    }

    onProgress(_type: unknown, token: string | number, handler: (value: any) => void): Disposable {
        this.progress.set(token, handler);
        return { dispose: () => this.progress.delete(token) };
    }

    async sendRequest(type: { method: string }, params: any, token?: CancellationToken): Promise<any> {
        this.requests.push({ method: type.method, params });
        switch (type.method) {
            case 'agent/newSession':
                this.sessions += 1;
                return { sessionId: `s-${this.sessions}` };
            case 'agent/forget':
                return { forgotten: true };
            case 'agent/run':
                return this.run(params, token);
            default:
                throw new ResponseError(-32601, `no method ${type.method}`);
        }
    }

    private async run(params: any, token?: CancellationToken): Promise<AgentRunResult> {
        const script = this.runs.shift();
        if (!script) {
            throw new Error('no run scripted');
        }
        const report = this.progress.get(params.workDoneToken)!;
        for (const step of script.steps) {
            if ('progress' in step) {
                report(step.progress);
            } else if ('ask' in step) {
                const actions = (step.actions ?? [...CALL_ANSWERS]).map((title) => ({ title }));
                this.answers.push(await this.broker!.handle({ type: 2, message: step.ask, actions }));
            } else {
                if (!token!.isCancellationRequested) {
                    await new Promise<void>((resolve) => token!.onCancellationRequested(() => resolve()));
                }
                throw new ResponseError(-32800, 'cancelled');
            }
        }
        if (script.error) {
            throw script.error;
        }
        return { ...RESULT, ...script.result };
    }
}

/** A CancellationToken whose cancel() the test calls. */
export function cancellation(): { token: CancellationToken; cancel(): void } {
    const listeners: (() => void)[] = [];
    const token = {
        isCancellationRequested: false,
        onCancellationRequested: (listener: () => void) => {
            listeners.push(listener);
            return { dispose: () => undefined };
        },
    };
    return {
        token: token as unknown as CancellationToken,
        cancel: () => {
            token.isCancellationRequested = true;
            listeners.forEach((listener) => listener());
        },
    };
}
