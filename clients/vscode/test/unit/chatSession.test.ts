import { ResponseError } from 'vscode-jsonrpc';
import { AnswerStream } from '../../src/chat/answerStream';
import { CALL_ANSWERS, ConsentBroker, isCallQuestion } from '../../src/chat/consent';
import { ChatEvent, ChatSession, describeError, toolPaths, turnFooter } from '../../src/chat/session';
import { answerTurn, cancellation, FakeDaemon, RESULT, ScriptedRun, text, toolCall, toolResult } from './chatFakes';

function setup(runs: ScriptedRun[]) {
    const fallback = jest.fn(async () => ({ title: 'from the notification' }));
    const broker = new ConsentBroker(fallback);
    const daemon = new FakeDaemon(runs, broker);
    const chat = new ChatSession({ connect: async () => daemon, broker, maxSteps: () => 4 });
    const events: ChatEvent[] = [];
    return { fallback, broker, daemon, chat, events, onEvent: (event: ChatEvent) => events.push(event) };
}

describe('AnswerStream', () => {
    test('decodes an answer turn piece by piece, escapes cut between pieces included', () => {
        const stream = new AnswerStream();
        const turn = JSON.stringify({ answer: 'Line "one"\nsé \u{1F600} done' });
        let out = '';
        for (let i = 0; i < turn.length; i += 3) {
            out += stream.feed(turn.slice(i, i + 3));
        }
        expect(stream.isAnswer).toBe(true);
        expect(out).toBe('Line "one"\nsé \u{1F600} done');
        expect(stream.feed('more')).toBe('');
    });

    test('a tool call turn, or any other, has no answer text', () => {
        const stream = new AnswerStream();
        expect(stream.feed('{"tool": "echo", "arguments": {"answer": "x"}}')).toBe('');
        expect(stream.isAnswer).toBe(false);
    });

    test('whitespace between the opening tokens is allowed', () => {
        const stream = new AnswerStream();
        expect(stream.feed('{ "answer" :  "hi')).toBe('hi');
        expect(stream.feed(' there"}')).toBe(' there');
    });
});

test('toolPaths: the strings of path-like arguments, arrays included', () => {
    expect(toolPaths({ path: 'a.txt', content: 'not/a/path', files: ['b', 'c', 3], source_dir: '/workspace/x', value: '/etc' })).toEqual([
        'a.txt',
        'b',
        'c',
        '/workspace/x',
    ]);
});

describe('ChatSession', () => {
    test('a run: decoded answer text, tool calls with their paths and results, then the model and tokens', async () => {
        const { daemon, chat, events, onEvent } = setup([
            {
                steps: [
                    { progress: { kind: 'begin', title: 'Llama Agent', message: 'hi' } },
                    ...[text('{"tool": "read_file", '), text('"arguments": {"path": "notes.txt"}}')].map((progress) => ({ progress })),
                    { progress: toolCall(0, 'read_file', { path: 'notes.txt' }) },
                    { progress: toolResult(0, 'read_file', 'hello') },
                    ...answerTurn('It says hello.').map((progress) => ({ progress })),
                    { progress: { kind: 'end', message: 'done (answer)' } },
                ],
                result: { answer: 'It says hello.', steps: [{ tool: 'read_file', arguments: {}, result: 'hello', isError: false }] },
            },
        ]);
        const outcome = await chat.run('What is in notes.txt?', onEvent);
        expect(events.filter((e) => e.kind !== 'answer')).toEqual([
            { kind: 'toolCall', step: 0, tool: 'read_file', arguments: { path: 'notes.txt' }, paths: ['notes.txt'] },
            { kind: 'toolResult', step: 0, tool: 'read_file', result: 'hello', isError: false },
        ]);
        const answer = events.filter((e): e is { kind: 'answer'; text: string } => e.kind === 'answer');
        expect(answer.length).toBeGreaterThan(1); // streamed, not in one piece
        expect(answer.map((e) => e.text).join('')).toBe('It says hello.');
        expect(outcome.kind).toBe('answered');
        if (outcome.kind !== 'answered') return;
        expect(outcome.turn).toMatchObject({ answer: 'It says hello.', streamed: 'It says hello.', toolCalls: 1, sessionId: 's-1' });
        expect(turnFooter(outcome.turn)).toBe('gemma-3-270m.gguf (llama) · 120 prompt + 7 completion tokens · 1 tool call');
        const run = daemon.requests.find((r) => r.method === 'agent/run')!;
        expect(run.params).toMatchObject({ prompt: 'What is in notes.txt?', maxSteps: 4, sessionId: 's-1' });
    });

    test('follow-ups continue the conversation; a new daemon (connection) starts a new one; forget ends it', async () => {
        const runs = [{ steps: [] }, { steps: [] }];
        const { daemon, chat, onEvent } = setup(runs);
        await chat.run('first', onEvent);
        await chat.run('second', onEvent);
        const sessions = daemon.requests.filter((r) => r.method === 'agent/run').map((r) => r.params.sessionId);
        expect(sessions).toEqual(['s-1', 's-1']);
        expect(daemon.requests.filter((r) => r.method === 'agent/newSession')).toHaveLength(1);
        await chat.forget();
        expect(daemon.requests.at(-1)).toEqual({ method: 'agent/forget', params: { sessionId: 's-1' } });
        expect(chat.sessionId).toBeUndefined();

        const other = new FakeDaemon([{ steps: [] }]);
        const moved = new ChatSession({ connect: async () => other, maxSteps: () => 1 });
        (moved as unknown as { sessionId: string }).sessionId = 's-old';
        await moved.run('again', onEvent);
        expect(other.requests.map((r) => r.method)).toEqual(['agent/newSession', 'agent/run']);
    });

    test('an answer that never streamed (a plain-text model) is given whole at the end', async () => {
        const { chat, events, onEvent } = setup([{ steps: [], result: { answer: 'plain' } }]);
        await chat.run('x', onEvent);
        expect(events).toEqual([{ kind: 'answer', text: 'plain' }]);
    });

    test('a write is asked in the chat while it runs; the answer goes back to the daemon', async () => {
        const { daemon, chat, events, fallback } = setup([{ steps: [{ ask: 'llama-agent: write a.txt? Allow this call?' }] }]);
        const outcome = await chat.run('write it', (event) => {
            events.push(event);
            if (event.kind === 'question') {
                expect(chat.answer(event.id, 'Always allow in this session')).toBe(true);
                expect(chat.answer(event.id, 'Reject')).toBe(false); // answered once only
            }
        });
        expect(outcome.kind).toBe('answered');
        expect(events).toEqual([
            { kind: 'question', id: 'q1', message: 'llama-agent: write a.txt? Allow this call?', actions: [...CALL_ANSWERS] },
            { kind: 'questionClosed', id: 'q1', answer: 'Always allow in this session' },
            { kind: 'answer', text: 'done' },
        ]);
        expect(daemon.answers).toEqual([{ title: 'Always allow in this session' }]);
        expect(fallback).not.toHaveBeenCalled();
    });

    test("other questions (a tool's grants), and any question outside a run, go to the notification", async () => {
        const { broker, daemon, chat, events, onEvent, fallback } = setup([
            { steps: [{ ask: 'the tool asks for /data', actions: ['Allow once', 'Always allow', 'Deny'] }] },
        ]);
        await chat.run('x', onEvent);
        expect(events.filter((e) => e.kind !== 'answer')).toEqual([]);
        expect(daemon.answers).toEqual([{ title: 'from the notification' }]);
        const call = { type: 2, message: 'write?', actions: CALL_ANSWERS.map((title) => ({ title })) };
        expect(isCallQuestion(call)).toBe(true);
        expect(broker.active).toBe(false);
        await expect(broker.handle(call)).resolves.toEqual({ title: 'from the notification' });
        expect(fallback).toHaveBeenCalledTimes(2);
    });

    test('an answer the question did not offer is a refusal (null)', async () => {
        const { daemon, chat } = setup([{ steps: [{ ask: 'write?' }] }]);
        await chat.run('x', (event) => event.kind === 'question' && chat.answer(event.id, 'Yes please'));
        expect(daemon.answers).toEqual([null]);
    });

    test('stop: the run is cancelled, and a question left open is answered as a refusal', async () => {
        const { daemon, chat, events } = setup([{ steps: [{ ask: 'write?' }, { waitForCancel: true }] }]);
        const { token, cancel } = cancellation();
        const outcome = await chat.run(
            'x',
            (event) => {
                events.push(event);
                if (event.kind === 'question') {
                    setTimeout(cancel, 5);
                }
            },
            token,
        );
        expect(outcome).toEqual({ kind: 'cancelled' });
        expect(events.at(-1)).toEqual({ kind: 'questionClosed', id: 'q1', answer: undefined });
        expect(daemon.answers).toEqual([null]);
        expect(chat.running).toBe(false);
    });

    test("the daemon's error, with its code, readable", async () => {
        const { chat, onEvent } = setup([{ steps: [], error: new ResponseError(-32010, 'model not loaded: no such file') }]);
        const outcome = await chat.run('x', onEvent);
        expect(outcome).toEqual({ kind: 'failed', error: { message: 'model not loaded: no such file', code: -32010 } });
        if (outcome.kind === 'failed') {
            expect(describeError(outcome.error)).toBe('model not loaded: no such file (error -32010)');
        }
    });

    test('no daemon: a readable failure; one run at a time', async () => {
        const nothing = new ChatSession({ connect: async () => undefined, maxSteps: () => 1 });
        const outcome = await nothing.run('x', () => undefined);
        expect(outcome.kind === 'failed' && outcome.error.message).toMatch(/daemon is not running/);

        const { chat, onEvent } = setup([{ steps: [{ waitForCancel: true }] }]);
        const { token, cancel } = cancellation();
        const first = chat.run('one', onEvent, token);
        await new Promise((r) => setTimeout(r, 5));
        const second = await chat.run('two', onEvent);
        expect(second.kind === 'failed' && second.error.message).toMatch(/already going on/);
        cancel();
        expect(await first).toEqual({ kind: 'cancelled' });
    });

    test('the footer says why a run stopped early and which server answered', () => {
        expect(
            turnFooter({
                answer: '',
                streamed: '',
                stopReason: 'maxSteps',
                toolCalls: 2,
                usage: RESULT.usage,
                model: { backend: 'openai', name: 'gpt-4o-mini', baseUrl: 'http://127.0.0.1:8080/v1' },
            }),
        ).toBe('gpt-4o-mini (openai at http://127.0.0.1:8080/v1) · 120 prompt + 7 completion tokens · 2 tool calls · stopped: maxSteps');
    });
});
