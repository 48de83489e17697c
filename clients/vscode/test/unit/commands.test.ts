import { ProgressLocation, window, workspace } from 'vscode';
import { ResponseError } from 'vscode-jsonrpc';
import { invokeToolCommand, listToolsCommand, runAgentCommand, toolPickItems } from '../../src/commands';
import type { AgentConnection, AgentRunResult, RunProgressValue } from '../../src/protocol';
import { ECHO, COUNTER, LISTING } from './fixtures';

type Handler = (params: any, token: unknown, progress: Map<unknown, (value: RunProgressValue) => void>) => Promise<unknown>;

function fakeConnection(handlers: Record<string, Handler>) {
    const progress = new Map<unknown, (value: RunProgressValue) => void>();
    const connection = {
        sendRequest: jest.fn(async (type: { method: string }, params: unknown, token?: unknown) => {
            const handler = handlers[type.method];
            if (!handler) {
                throw new Error(`unexpected request ${type.method}`);
            }
            return handler(params, token, progress);
        }),
        onNotification: jest.fn(() => ({ dispose: jest.fn() })),
        onProgress: jest.fn((_type: unknown, token: unknown, handler: (value: RunProgressValue) => void) => {
            progress.set(token, handler);
            return { dispose: () => progress.delete(token) };
        }),
    };
    return { connection, progress };
}

function context(connection: unknown) {
    const runs = { append: jest.fn(), appendLine: jest.fn(), show: jest.fn() };
    const ctx = { connect: jest.fn(async () => connection as AgentConnection), runs: runs as never, showLog: jest.fn() };
    return { ctx, runs };
}

function written(runs: { append: jest.Mock; appendLine: jest.Mock }): string {
    // The order of append/appendLine calls across both mocks.
    const calls = [
        ...runs.append.mock.calls.map((c, i) => ({ order: runs.append.mock.invocationCallOrder[i], text: c[0] as string })),
        ...runs.appendLine.mock.calls.map((c, i) => ({ order: runs.appendLine.mock.invocationCallOrder[i], text: `${c[0]}\n` })),
    ];
    return calls
        .sort((a, b) => a.order - b.order)
        .map((c) => c.text)
        .join('');
}

const ANSWER: AgentRunResult = {
    answer: 'Something to echo',
    steps: [{ tool: 'echo', arguments: { value: 'Something to echo' }, result: 'Something to echo', isError: false }],
    usage: { promptTokens: 10, completionTokens: 5 },
    stopReason: 'answer',
};

const cancelToken = { isCancellationRequested: false, onCancellationRequested: jest.fn() };
const progressReport = jest.fn();

beforeEach(() => {
    (window.withProgress as jest.Mock).mockImplementation((_options, task) => task({ report: progressReport }, cancelToken));
    (workspace.getConfiguration as jest.Mock).mockReturnValue({
        get: (key: string) => ({ maxSteps: 3 } as Record<string, unknown>)[key],
    });
});

describe('Run Agent…', () => {
    test('asks for the prompt, streams $/progress into the Runs channel, shows the answer', async () => {
        const { connection } = fakeConnection({
            'agent/run': async (params, _token, progress) => {
                const emit = progress.get(params.workDoneToken)!;
                emit({ kind: 'begin', title: 'Llama Agent', message: params.prompt });
                emit({ kind: 'report', llamaAgent: { event: 'toolCall', step: 0, tool: 'echo', arguments: { value: 'Something to echo' } } });
                emit({ kind: 'report', llamaAgent: { event: 'toolResult', step: 0, tool: 'echo', result: 'Something to echo', isError: false } });
                emit({ kind: 'end', message: 'done (answer)' });
                return ANSWER;
            },
        });
        (window.showInputBox as jest.Mock).mockResolvedValue("Please echo back 'Something to echo'");
        const { ctx, runs } = context(connection);
        const result = await runAgentCommand(ctx);
        expect(result).toEqual(ANSWER);
        const [type, params, token] = connection.sendRequest.mock.calls[0] as [{ method: string }, { workDoneToken: string }, unknown];
        expect(type.method).toBe('agent/run');
        expect(params).toEqual({ prompt: "Please echo back 'Something to echo'", maxSteps: 3, workDoneToken: expect.any(String) });
        expect(token).toBe(cancelToken);
        expect(connection.onProgress.mock.calls[0][1]).toBe(params.workDoneToken);
        expect(window.withProgress).toHaveBeenCalledWith(
            { location: ProgressLocation.Notification, title: 'Llama Agent', cancellable: true },
            expect.any(Function),
        );
        expect(progressReport).toHaveBeenCalledWith({ message: 'calling echo {"value":"Something to echo"}' });
        expect(written(runs)).toBe(
            "▶ Please echo back 'Something to echo'\n" +
                '→ echo {"value":"Something to echo"}\n' +
                '← Something to echo\n' +
                '■ done (answer)\n' +
                'Answer: Something to echo\n' +
                '(answer; 1 tool call(s); 10 prompt + 5 completion tokens)\n',
        );
        expect(window.showInformationMessage).toHaveBeenCalledWith('Answer: Something to echo (1 tool call: echo)');
    });

    test('the Runs channel says which backend and model answered', async () => {
        const model = { backend: 'openai', name: 'qwen3-4b', baseUrl: 'http://127.0.0.1:8080/v1' };
        const { connection } = fakeConnection({ 'agent/run': async () => ({ ...ANSWER, steps: [], model }) });
        const { ctx, runs } = context(connection);
        await expect(runAgentCommand(ctx, 'hi')).resolves.toMatchObject({ model });
        expect(written(runs)).toBe(
            'Answer: Something to echo\n' +
                '(answer; 0 tool call(s); 10 prompt + 5 completion tokens)\n' +
                'model: qwen3-4b (openai at http://127.0.0.1:8080/v1)\n',
        );
    });

    test('Cancel: the daemon answers -32800 and the run is reported cancelled, not failed', async () => {
        const { connection } = fakeConnection({
            'agent/run': async () => {
                throw new ResponseError(-32800, 'Request cancelled');
            },
        });
        const { ctx, runs } = context(connection);
        await expect(runAgentCommand(ctx, 'go')).resolves.toBeUndefined();
        expect(window.showInformationMessage).toHaveBeenCalledWith('Llama Agent: the run was cancelled.');
        expect(window.showErrorMessage).not.toHaveBeenCalled();
        expect(runs.appendLine).toHaveBeenCalledWith('(cancelled)');
        expect(connection.onProgress).toHaveBeenCalledTimes(1);
    });

    test('an error (no model) is shown as an error', async () => {
        const { connection } = fakeConnection({
            'agent/run': async () => {
                throw new ResponseError(-32010, 'the model is unavailable: /x.gguf: no such file');
            },
        });
        const { ctx } = context(connection);
        await runAgentCommand(ctx, 'go');
        expect(window.showErrorMessage).toHaveBeenCalledWith(
            'Llama Agent: the run failed: the model is unavailable: /x.gguf: no such file',
        );
    });

    test('an empty or dismissed prompt runs nothing; no daemon runs nothing', async () => {
        const { connection } = fakeConnection({});
        (window.showInputBox as jest.Mock).mockResolvedValue(undefined);
        await runAgentCommand(context(connection).ctx);
        expect(connection.sendRequest).not.toHaveBeenCalled();
        const validate = (window.showInputBox as jest.Mock).mock.calls[0][0].validateInput;
        expect(validate('  ')).toBe('Enter a prompt');
        expect(validate('hi')).toBeUndefined();
        const noDaemon = { ...context(connection).ctx, connect: async () => undefined };
        await expect(runAgentCommand(noDaemon, 'x')).resolves.toBeUndefined();
        expect(window.showInputBox).toHaveBeenCalledTimes(1);
    });
});

describe('List Tools', () => {
    test('rows: each tool with its version, description and grants; then the failures', () => {
        const items = toolPickItems(LISTING, true);
        expect(items.map(({ label, description, detail, kind }) => ({ label, description, detail, kind }))).toEqual([
            {
                label: '$(tools) counter',
                description: 'v2.1.0',
                detail: 'Counts to a number. — timeout 5 s · memory 64 MiB · output 4 KiB · dirs /data → /data (ro) · env HOME · no network',
                kind: undefined,
            },
            {
                label: '$(tools) echo',
                description: 'v1.0.0',
                detail: 'Returns the given value unchanged. — timeout 10 s · memory 256 MiB · output 1 MiB · no dirs · no env · no network',
                kind: undefined,
            },
            { label: 'Failed to load', description: undefined, detail: undefined, kind: -1 },
            {
                label: '$(error) broken.wasm',
                description: '/repo/build/tools/broken.wasm',
                detail: 'not a valid WebAssembly component: bad magic\nmore detail',
                kind: undefined,
            },
        ]);
    });

    test('shows the quick pick with a title counting tools and failures', async () => {
        const { connection } = fakeConnection({ 'tools/list': async () => LISTING });
        await listToolsCommand(context(connection).ctx);
        const [items, options] = (window.showQuickPick as jest.Mock).mock.calls[0];
        expect(items).toHaveLength(4);
        expect(options.title).toBe('Llama Agent: 2 tools, 1 failed to load');
    });
});

describe('Invoke Tool…', () => {
    test('pick echo, type the value, the result is shown and logged', async () => {
        const { connection } = fakeConnection({
            'tools/list': async () => LISTING,
            'tools/invoke': async (params) => ({
                content: [{ type: 'text', text: params.arguments.value }],
                isError: false,
            }),
        });
        (window.showQuickPick as jest.Mock).mockImplementation(async (items: { tool?: { name: string } }[]) =>
            items.find((item) => item.tool?.name === 'echo'),
        );
        (window.showInputBox as jest.Mock).mockResolvedValue('Something to echo');
        const { ctx, runs } = context(connection);
        const result = await invokeToolCommand(ctx);
        expect(result?.content[0].text).toBe('Something to echo');
        const invoke = connection.sendRequest.mock.calls.find(([type]) => type.method === 'tools/invoke')!;
        expect(invoke[1]).toEqual({ name: 'echo', arguments: { value: 'Something to echo' } });
        const box = (window.showInputBox as jest.Mock).mock.calls[0][0];
        expect(box.prompt).toBe('value (string, required): The text to echo back.');
        expect(box.title).toBe('Llama Agent: echo (1/1)');
        expect(window.showInformationMessage).toHaveBeenCalledWith('echo returned: Something to echo');
        expect(runs.appendLine.mock.calls).toEqual([['→ echo {"value":"Something to echo"}'], ['← Something to echo']]);
    });

    test('one typed box per parameter, each checked against its type', async () => {
        const { connection } = fakeConnection({
            'tools/list': async () => LISTING,
            'tools/invoke': async () => ({ content: [{ type: 'text', text: 'ok' }], isError: false }),
        });
        const answers = ['7', 'true', '', '0.25'];
        (window.showInputBox as jest.Mock).mockImplementation(async () => answers.shift());
        await invokeToolCommand(context(connection).ctx, 'counter');
        const boxes = (window.showInputBox as jest.Mock).mock.calls.map(([options]) => options);
        expect(boxes.map((b) => b.prompt)).toEqual([
            'to (integer, required): Where to stop.',
            'loud (boolean, required)',
            'label (string, optional: leave empty to omit)',
            'ratio (number, optional: leave empty to omit)',
        ]);
        expect(boxes[0].validateInput('seven')).toBe('to must be an integer, e.g. 42');
        expect(boxes[0].validateInput('0')).toBe('to must be at least 1');
        expect(boxes[1].validateInput('maybe')).toBe('loud must be true or false');
        expect(boxes[3].validateInput('x')).toBe('ratio must be a number, e.g. 3.14');
        const invoke = connection.sendRequest.mock.calls.find(([type]) => type.method === 'tools/invoke')!;
        expect(invoke[1]).toEqual({ name: 'counter', arguments: { to: 7, loud: true, ratio: 0.25 } });
        expect(window.showQuickPick).not.toHaveBeenCalled();
    });

    test('Escape in a parameter box invokes nothing', async () => {
        const { connection } = fakeConnection({ 'tools/list': async () => ({ tools: [COUNTER], failed: [] }) });
        (window.showInputBox as jest.Mock).mockResolvedValue(undefined);
        await invokeToolCommand(context(connection).ctx, { kind: 'tool', tool: COUNTER });
        expect(connection.sendRequest.mock.calls.map(([type]) => type.method)).toEqual(['tools/list']);
    });

    test('-32602 from the daemon and isError results are shown as errors', async () => {
        const { connection } = fakeConnection({
            'tools/list': async () => ({ tools: [ECHO], failed: [] }),
            'tools/invoke': async () => {
                throw new ResponseError(-32602, "invalid arguments for tool 'echo': value: required");
            },
        });
        (window.showInputBox as jest.Mock).mockResolvedValue('x');
        await invokeToolCommand(context(connection).ctx, 'echo');
        expect(window.showErrorMessage).toHaveBeenCalledWith(
            "Llama Agent: tools/invoke echo: invalid arguments for tool 'echo': value: required",
        );

        const failing = fakeConnection({
            'tools/list': async () => ({ tools: [ECHO], failed: [] }),
            'tools/invoke': async () => ({ content: [{ type: 'text', text: 'trap: unreachable' }], isError: true }),
        });
        await invokeToolCommand(context(failing.connection).ctx, 'echo');
        expect(window.showErrorMessage).toHaveBeenLastCalledWith('Llama Agent: echo failed: trap: unreachable');
    });

    test('an unknown tool name is an error', async () => {
        const { connection } = fakeConnection({ 'tools/list': async () => ({ tools: [ECHO], failed: [] }) });
        await invokeToolCommand(context(connection).ctx, 'nope');
        expect(window.showErrorMessage).toHaveBeenCalledWith('Llama Agent: no tool named "nope" is loaded.');
    });
});
