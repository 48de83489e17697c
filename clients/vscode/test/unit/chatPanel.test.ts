import { LogOutputChannel, Uri, WebviewPanel } from 'vscode';
import { registerLogger } from '../../src/common/logging';
import { ConsentBroker } from '../../src/chat/consent';
import { ChatPanel, panelHtml } from '../../src/chat/panel';
import { MAX_PROMPT, parseWebviewMessage, ToWebview } from '../../src/chat/panelMessages';
import { answerTurn, FakeDaemon, ScriptedRun, toolCall, toolResult } from './chatFakes';

describe('messages from the webview', () => {
    test('the messages the page sends are taken', () => {
        expect(parseWebviewMessage({ type: 'ready' })).toEqual({ type: 'ready' });
        expect(parseWebviewMessage({ type: 'prompt', text: 'hi there' })).toEqual({ type: 'prompt', text: 'hi there' });
        expect(parseWebviewMessage({ type: 'stop' })).toEqual({ type: 'stop' });
        expect(parseWebviewMessage({ type: 'newChat' })).toEqual({ type: 'newChat' });
        expect(parseWebviewMessage({ type: 'answer', id: 'q12', action: 'Reject' })).toEqual({ type: 'answer', id: 'q12', action: 'Reject' });
        expect(parseWebviewMessage({ type: 'open', path: '/ws/a.txt' })).toEqual({ type: 'open', path: '/ws/a.txt' });
    });

    test.each([
        ['not an object', 'prompt'],
        ['null', null],
        ['an array', [{ type: 'stop' }]],
        ['an unknown type', { type: 'runCommand', command: 'workbench.action.terminal.new' }],
        ['a prompt that is not a string', { type: 'prompt', text: 42 }],
        ['an empty prompt', { type: 'prompt', text: '  \n' }],
        ['a prompt too long', { type: 'prompt', text: 'x'.repeat(MAX_PROMPT + 1) }],
        ['extra fields', { type: 'prompt', text: 'hi', sessionId: 's-1' }],
        ['an answer the daemon does not offer', { type: 'answer', id: 'q1', action: 'Allow everything forever' }],
        ['a malformed question id', { type: 'answer', id: '../q1', action: 'Reject' }],
        ['an empty path', { type: 'open', path: '' }],
        ['stop with a payload', { type: 'stop', now: true }],
    ])('%s is dropped', (_what, raw) => {
        expect(parseWebviewMessage(raw)).toBeUndefined();
    });
});

test('the page: a strict Content-Security-Policy, its script only with the nonce', () => {
    const html = panelHtml('vscode-resource:', 'vscode-resource:/chat.js', 'vscode-resource:/chat.css', 'abc123');
    const csp = /<meta http-equiv="Content-Security-Policy" content="([^"]+)">/.exec(html)?.[1];
    expect(csp).toBe("default-src 'none'; style-src vscode-resource:; script-src 'nonce-abc123'; img-src vscode-resource:; font-src vscode-resource:");
    expect(html).toContain('<script nonce="abc123" src="vscode-resource:/chat.js"></script>');
    expect(html.match(/<script/g)).toHaveLength(1);
    expect(html).not.toMatch(/unsafe-inline|unsafe-eval/);
});

function fakePanel() {
    let receive: (raw: unknown) => void = () => undefined;
    const posted: ToWebview[] = [];
    const panel = {
        webview: {
            cspSource: 'vscode-resource:',
            html: '',
            asWebviewUri: (uri: Uri) => uri,
            onDidReceiveMessage: (listener: (raw: unknown) => void) => {
                receive = listener;
                return { dispose: () => undefined };
            },
            postMessage: async (message: ToWebview) => posted.push(message),
        },
        onDidDispose: () => ({ dispose: () => undefined }),
        reveal: jest.fn(),
    };
    return { panel: panel as unknown as WebviewPanel, posted, send: (raw: unknown) => receive(raw) };
}

async function until(check: () => boolean): Promise<void> {
    for (let i = 0; i < 200 && !check(); i++) {
        await new Promise((r) => setTimeout(r, 5));
    }
    expect(check()).toBe(true);
}

describe('the chat panel', () => {
    let warn: jest.Mock;
    beforeEach(() => {
        warn = jest.fn();
        registerLogger({ info: jest.fn(), warn, error: jest.fn(), debug: jest.fn(), trace: jest.fn() } as unknown as LogOutputChannel);
    });

    function open(runs: ScriptedRun[]) {
        const broker = new ConsentBroker(async () => null);
        const daemon = new FakeDaemon(runs, broker);
        const fake = fakePanel();
        const chat = new ChatPanel(fake.panel, Uri.file('/ext'), { connect: async () => daemon, broker, maxSteps: () => 5 }, () => '/ws');
        return { ...fake, daemon, chat };
    }

    test('a prompt: the user row, busy, the streamed answer, the call with its path, the question, the footer', async () => {
        const { posted, send, daemon } = open([
            {
                steps: [
                    { progress: toolCall(0, 'write_file', { path: 'a.txt', content: '<b>x</b>' }) },
                    { ask: "llama-agent: write 'a.txt'? Allow this call?" },
                    { progress: toolResult(0, 'write_file', 'wrote 8 bytes to a.txt') },
                    ...answerTurn('Wrote <b>a.txt</b>.').map((progress) => ({ progress })),
                ],
                result: { answer: 'Wrote <b>a.txt</b>.' },
            },
        ]);
        send({ type: 'prompt', text: 'write it' });
        await until(() => posted.some((m) => m.type === 'question'));
        const question = posted.find((m) => m.type === 'question') as Extract<ToWebview, { type: 'question' }>;
        send({ type: 'answer', id: question.id, action: 'Allow once' });
        await until(() => posted.some((m) => m.type === 'busy' && !m.busy));
        const kinds = posted.map((m) => m.type);
        expect(kinds.slice(0, 5)).toEqual(['user', 'busy', 'toolCall', 'question', 'questionClosed']);
        expect(posted.find((m) => m.type === 'toolCall')).toEqual({
            type: 'toolCall',
            step: 0,
            tool: 'write_file',
            args: '{"path":"a.txt","content":"<b>x</b>"}',
            paths: ['/ws/a.txt'],
        });
        expect(daemon.answers).toEqual([{ title: 'Allow once' }]);
        const answer = posted.filter((m): m is { type: 'answer'; text: string } => m.type === 'answer');
        expect(answer.map((m) => m.text).join('')).toBe('Wrote <b>a.txt</b>.');
        expect(posted.at(-2)).toEqual({ type: 'done', footer: 'gemma-3-270m.gguf (llama) · 120 prompt + 7 completion tokens · 0 tool calls' });
        expect(posted.at(-1)).toEqual({ type: 'busy', busy: false });
    });

    test('Stop cancels the run; the error of a failed run is shown; malformed messages change nothing', async () => {
        const { posted, send } = open([{ steps: [{ waitForCancel: true }] }]);
        send({ type: 'prompt', text: 'x' });
        await until(() => posted.some((m) => m.type === 'busy' && m.busy));
        send({ type: 'prompt', text: 'again' });
        await until(() => posted.some((m) => m.type === 'error'));
        expect(posted.find((m) => m.type === 'error')).toEqual({ type: 'error', message: 'A run is already going on: wait for it or press Stop.' });
        send({ type: 'stop' });
        await until(() => posted.some((m) => m.type === 'stopped'));

        const before = posted.length;
        send({ type: 'prompt', text: 'hi', extra: 1 });
        send({ type: 'eval', code: 'alert(1)' });
        await new Promise((r) => setTimeout(r, 20));
        expect(posted.length).toBe(before);
        expect(warn).toHaveBeenCalledTimes(2);
    });

    test('New chat forgets the conversation: the next prompt starts another', async () => {
        const { posted, send, daemon } = open([{ steps: [] }, { steps: [] }]);
        send({ type: 'prompt', text: 'one' });
        await until(() => posted.filter((m) => m.type === 'done').length === 1);
        send({ type: 'newChat' });
        await until(() => posted.some((m) => m.type === 'cleared'));
        send({ type: 'prompt', text: 'two' });
        await until(() => posted.filter((m) => m.type === 'done').length === 2);
        expect(daemon.requests.map((r) => `${r.method} ${r.params.sessionId ?? ''}`.trim())).toEqual([
            'agent/newSession',
            'agent/run s-1',
            'agent/forget s-1',
            'agent/newSession',
            'agent/run s-2',
        ]);
    });
});
