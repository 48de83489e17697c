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
