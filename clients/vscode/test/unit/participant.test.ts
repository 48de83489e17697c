import * as vscode from 'vscode';
import { ResponseError } from 'vscode-jsonrpc';
import { ConsentBroker } from '../../src/chat/consent';
import { ANSWER_COMMAND, chatKeyOf, ChatParticipantHost, hostPath, PARTICIPANT_ID, registerParticipant } from '../../src/chat/participant';
import { answerTurn, cancellation, FakeDaemon, ScriptedRun, toolCall, toolResult } from './chatFakes';

/** A ChatResponseStream that records what the handler showed, in order, as [method, text]. */
function recordingStream() {
    const calls: [string, unknown][] = [];
    const text = (value: unknown) => (value instanceof vscode.MarkdownString ? value.value : value);
    const stream = {
        markdown: jest.fn((value: unknown) => calls.push(['markdown', text(value)])),
        progress: jest.fn((value: string) => calls.push(['progress', value])),
        reference: jest.fn((value: vscode.Uri) => calls.push(['reference', value.fsPath])),
        button: jest.fn((command: vscode.Command) => calls.push(['button', command])),
        anchor: jest.fn(),
        filetree: jest.fn(),
        push: jest.fn(),
    };
    return { calls, stream: stream as unknown as vscode.ChatResponseStream };
}

function request(prompt: string): vscode.ChatRequest {
    return { prompt, command: undefined, references: [], toolReferences: [] } as unknown as vscode.ChatRequest;
}

const ROOT = '/home/me/project';

function setup(runs: ScriptedRun[]) {
    const broker = new ConsentBroker(async () => ({ title: 'notification' }));
    const daemon = new FakeDaemon(runs, broker);
    const host = new ChatParticipantHost({ connect: async () => daemon, broker, maxSteps: () => 5 }, () => ROOT);
    return { daemon, host };
}

const noToken = cancellation().token as unknown as vscode.CancellationToken;

test('hostPath: the tools see the workspace as /workspace; relative paths start at it', () => {
    expect(hostPath('/workspace/a/b.txt', ROOT)).toBe(`${ROOT}/a/b.txt`);
    expect(hostPath('notes.txt', ROOT)).toBe(`${ROOT}/notes.txt`);
    expect(hostPath('/etc/hosts', ROOT)).toBe('/etc/hosts');
    expect(hostPath('notes.txt', undefined)).toBeUndefined();
});

test('@llama: the answer streams as markdown, calls as progress with their paths as references, then the model and tokens', async () => {
    const { host } = setup([
        {
            steps: [
                { progress: toolCall(0, 'read_file', { path: '/workspace/notes.txt' }) },
                { progress: toolResult(0, 'read_file', 'hello') },
                ...answerTurn('It says *hello*.').map((progress) => ({ progress })),
            ],
            result: { answer: 'It says *hello*.', steps: [{ tool: 'read_file', arguments: {}, result: 'hello', isError: false }] },
        },
    ]);
    const { calls, stream } = recordingStream();
    const result = await host.handler(request('What is in notes.txt?'), { history: [] }, stream, noToken);
    expect(calls.slice(0, 3)).toEqual([
        ['progress', 'Calling read_file {"path":"/workspace/notes.txt"}'],
        ['reference', `${ROOT}/notes.txt`],
        ['progress', 'read_file returned: hello'],
    ]);
    const markdown = calls.slice(3, -1);
    expect(markdown.length).toBeGreaterThan(1);
    expect(markdown.every(([method]) => method === 'markdown')).toBe(true);
    expect(markdown.map(([, text]) => text).join('')).toBe('It says *hello*.'); // the model's markdown, as it wrote it
    expect(calls.at(-1)?.[0]).toBe('markdown');
    expect(String(calls.at(-1)?.[1])).toContain('gemma-3-270m.gguf (llama) · 120 prompt + 7 completion tokens · 1 tool call');
    expect(result).toEqual({ metadata: { chatKey: expect.stringMatching(/^chat-/) } });
});

test('@llama: follow-ups in the same chat continue its daemon conversation; a new chat starts another', async () => {
    const { daemon, host } = setup([{ steps: [] }, { steps: [] }, { steps: [] }]);
    const first = (await host.handler(request('one'), { history: [] }, recordingStream().stream, noToken)) as vscode.ChatResult;
    const history = [
        { prompt: 'one', participant: PARTICIPANT_ID, command: undefined, references: [] },
        { participant: PARTICIPANT_ID, response: [], result: first, command: undefined },
    ] as unknown as vscode.ChatContext['history'];
    expect(chatKeyOf(history)).toBe(first.metadata!.chatKey);
    const second = (await host.handler(request('two'), { history }, recordingStream().stream, noToken)) as vscode.ChatResult;
    expect(second.metadata).toEqual(first.metadata);
    await host.handler(request('elsewhere'), { history: [] }, recordingStream().stream, noToken);
    const sessions = daemon.requests.filter((r) => r.method === 'agent/run').map((r) => r.params.sessionId);
    expect(sessions).toEqual(['s-1', 's-1', 's-2']);
});

test('@llama: a write is confirmed with buttons in the chat; the pressed one answers the daemon', async () => {
    const { daemon, host } = setup([{ steps: [{ ask: "llama-agent: write 'a.txt'? *Allow* this call?" }] }]);
    const { calls, stream } = recordingStream();
    (stream.button as jest.Mock).mockImplementation((command: vscode.Command) => {
        calls.push(['button', command]);
        if (command.title === 'Reject') {
            // The person presses "Reject": VS Code runs the button's command with its arguments.
            setTimeout(() => expect(host.answer(...(command.arguments as [unknown, unknown, unknown]))).toBe(true), 1);
        }
    });
    await host.handler(request('write it'), { history: [] }, stream, noToken);
    // The daemon's words go in as text (MarkdownString.appendText escapes markdown), never as markdown.
    const question = (stream.markdown as jest.Mock).mock.calls.find(([value]) => String(value?.value ?? value).includes('a.txt'));
    expect(question?.[0]).toBeInstanceOf(vscode.MarkdownString);
    const buttons = calls.filter(([method]) => method === 'button').map(([, command]) => command as vscode.Command);
    expect(buttons.map((b) => b.title)).toEqual(['Allow once', 'Always allow in this session', 'Reject']);
    expect(buttons.every((b) => b.command === ANSWER_COMMAND)).toBe(true);
    expect(daemon.answers).toEqual([{ title: 'Reject' }]);
    expect(calls.some(([method, text]) => method === 'markdown' && String(text).includes('→ Reject'))).toBe(true);
    // A stale or forged press does nothing.
    expect(host.answer('chat-unknown', 'q1', 'Allow once')).toBe(false);
    expect(host.answer(1, 'q1', 'Allow once')).toBe(false);
});

test('@llama: stop cancels the run; the chat says it stopped', async () => {
    const { host } = setup([{ steps: [{ waitForCancel: true }] }]);
    const { token, cancel } = cancellation();
    const { calls, stream } = recordingStream();
    const pending = host.handler(request('x'), { history: [] }, stream, token as unknown as vscode.CancellationToken);
    setTimeout(cancel, 5);
    const result = (await pending) as vscode.ChatResult;
    expect(result.errorDetails).toBeUndefined();
    expect(String(calls.at(-1)?.[1])).toContain('(stopped)');
});

test("@llama: the daemon's error is the turn's error, with its code", async () => {
    const { host } = setup([{ steps: [], error: new ResponseError(-32602, 'prompt: must not be empty') }]);
    const result = (await host.handler(request(' '), { history: [] }, recordingStream().stream, noToken)) as vscode.ChatResult;
    expect(result.errorDetails).toEqual({ message: 'Llama Agent: prompt: must not be empty (error -32602)' });
});

test('registerParticipant: only where the editor has vscode.chat', () => {
    const { host } = setup([]);
    const create = (vscode as unknown as { chat: { createChatParticipant: jest.Mock } }).chat.createChatParticipant;
    const participant = registerParticipant(host);
    expect(create).toHaveBeenCalledWith(PARTICIPANT_ID, host.handler);
    expect(participant).toBeDefined();
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const raw = require('vscode') as { chat?: unknown };
    const saved = raw.chat;
    try {
        raw.chat = undefined;
        expect(registerParticipant(host)).toBeUndefined();
    } finally {
        raw.chat = saved;
    }
});
