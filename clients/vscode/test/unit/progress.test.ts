import { describeModel } from '../../src/format';
import { answerMessage, notificationMessage, RunFormatter } from '../../src/progress';
import type { AgentRunResult, RunProgressValue } from '../../src/protocol';

const RUN: RunProgressValue[] = [
    { kind: 'begin', title: 'Llama Agent', message: "Please echo back 'Something to echo'", cancellable: true },
    { kind: 'report', message: '{"tool": ', llamaAgent: { event: 'text', text: '{"tool": ' } },
    { kind: 'report', message: '"echo"}', llamaAgent: { event: 'text', text: '"echo"}' } },
    {
        kind: 'report',
        message: 'calling echo {"value": "Something to echo"}',
        llamaAgent: { event: 'toolCall', step: 0, tool: 'echo', arguments: { value: 'Something to echo' } },
    },
    {
        kind: 'report',
        message: 'echo result: Something to echo',
        llamaAgent: { event: 'toolResult', step: 0, tool: 'echo', result: 'Something to echo', isError: false },
    },
    { kind: 'report', message: '{"answer": "Something to echo"}\n', llamaAgent: { event: 'text', text: '{"answer": "Something to echo"}\n' } },
    { kind: 'end', message: 'done (answer)' },
];

const RESULT: AgentRunResult = {
    answer: 'Something to echo',
    steps: [{ tool: 'echo', arguments: { value: 'Something to echo' }, result: 'Something to echo', isError: false }],
    usage: { promptTokens: 459, completionTokens: 27 },
    stopReason: 'answer',
    promptFormat: 'completion',
};

describe('RunFormatter', () => {
    test('streams text as it comes and puts tool calls and results on lines of their own', () => {
        const formatter = new RunFormatter();
        const text = RUN.map((value) => formatter.format(value)).join('') + formatter.formatResult(RESULT);
        expect(text).toBe(
            [
                "▶ Please echo back 'Something to echo'",
                '{"tool": "echo"}',
                '→ echo {"value":"Something to echo"}',
                '← Something to echo',
                '{"answer": "Something to echo"}',
                '■ done (answer)',
                'Answer: Something to echo',
                '(answer; 1 tool call(s); 459 prompt + 27 completion tokens)',
                '',
            ].join('\n'),
        );
    });

    test('ends with the model that answered, when the daemon says', () => {
        const remote = new RunFormatter().formatResult({
            ...RESULT,
            model: { backend: 'openai', name: 'qwen3-4b', baseUrl: 'http://127.0.0.1:8080/v1' },
        });
        expect(remote).toBe(
            'Answer: Something to echo\n' +
                '(answer; 1 tool call(s); 459 prompt + 27 completion tokens)\n' +
                'model: qwen3-4b (openai at http://127.0.0.1:8080/v1)\n',
        );
        const local = new RunFormatter().formatResult({
            ...RESULT,
            model: { backend: 'llama', name: 'gemma-3-270m-it-Q8_0.gguf', baseUrl: null },
        });
        expect(local.split('\n').slice(-2)).toEqual(['model: gemma-3-270m-it-Q8_0.gguf (llama)', '']);
        // An older daemon, or a malformed model: no model line.
        expect(new RunFormatter().formatResult(RESULT)).not.toContain('model:');
        expect(new RunFormatter().formatResult({ ...RESULT, model: { backend: 1 } as never })).not.toContain('model:');
    });

    test('marks failed tool results and falls back to the LSP message for unknown events', () => {
        const formatter = new RunFormatter();
        expect(
            formatter.format({
                kind: 'report',
                llamaAgent: { event: 'toolResult', step: 1, tool: 'echo', result: 'trap', isError: true },
            }),
        ).toBe('✗ trap\n');
        expect(formatter.format({ kind: 'report', message: 'plain LSP report' })).toBe('plain LSP report\n');
        expect(formatter.format({ kind: 'report', message: 'x', llamaAgent: { event: 'text', text: '' } })).toBe('');
    });
});

describe('notification texts', () => {
    test('the progress notification shows tool calls and results, not streamed text', () => {
        expect(RUN.map(notificationMessage)).toEqual([
            undefined,
            undefined,
            undefined,
            'calling echo {"value":"Something to echo"}',
            'echo returned: Something to echo',
            undefined,
            undefined,
        ]);
    });

    test('long results are cut to one short line', () => {
        const long = 'x'.repeat(500);
        const message = notificationMessage({
            kind: 'report',
            llamaAgent: { event: 'toolResult', step: 0, tool: 'echo', result: `a\n${long}`, isError: false },
        })!;
        expect(message.length).toBe(120);
        expect(message.endsWith('…')).toBe(true);
        expect(message).not.toContain('\n');
    });

    test('the answer message names the answer, the tools and an unusual stop', () => {
        expect(answerMessage(RESULT)).toBe('Answer: Something to echo (1 tool call: echo)');
        expect(answerMessage({ ...RESULT, steps: [], stopReason: 'maxTokens' })).toBe(
            'Answer: Something to echo (no tool calls) (stopped: maxTokens)',
        );
    });
});

describe('describeModel', () => {
    test('a run\'s model: its name and backend, and the server of a remote one', () => {
        expect(describeModel({ backend: 'openai', name: 'gpt-4o-mini', baseUrl: 'https://api.openai.com/v1' })).toBe(
            'gpt-4o-mini (openai at https://api.openai.com/v1)',
        );
        expect(describeModel({ backend: 'llama', name: 'Qwen3-4B-Q4_K_M.gguf', baseUrl: null })).toBe('Qwen3-4B-Q4_K_M.gguf (llama)');
    });

    test('the daemon\'s configuration without --model: the backend\'s default', () => {
        expect(describeModel({ backend: 'llama', name: null, baseUrl: null })).toBe('the embedded model (llama)');
        expect(describeModel({ backend: 'openai', name: null, baseUrl: 'http://127.0.0.1:8080/v1' })).toBe(
            "the server's only model (openai at http://127.0.0.1:8080/v1)",
        );
    });
});
