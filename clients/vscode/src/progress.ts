// Turns an agent run's `$/progress` values into the text of the "Llama Agent: Runs" channel
// and the one-line message of the progress notification. No `vscode` import here.

import { describeModel } from './format';
import { AgentRunResult, modelInfo, RunProgressValue } from './protocol';

const NOTIFICATION_LIMIT = 120;

function shorten(text: string, limit: number): string {
    const oneLine = text.replace(/\s+/g, ' ').trim();
    return oneLine.length <= limit ? oneLine : `${oneLine.slice(0, limit - 1)}…`;
}

/**
 * Formats one run for an output channel: the model's streamed text as it comes, each tool call
 * and result on a line of its own, as `llama-agent run` prints them:
 *
 *     ▶ Please echo back 'Something to echo'
 *     {"tool": "echo", "arguments": {"value": "Something to echo"}}
 *     → echo {"value":"Something to echo"}
 *     ← Something to echo
 *     ...
 *     ■ done (answer)
 */
export class RunFormatter {
    private atLineStart = true;

    /** The text to append to the channel for one progress value. */
    format(value: RunProgressValue): string {
        switch (value.kind) {
            case 'begin':
                return this.line(`▶ ${value.message ?? value.title}`);
            case 'end':
                return this.line(`■ ${value.message ?? 'done'}`);
            case 'report': {
                const event = value.llamaAgent;
                if (!event) {
                    return value.message ? this.line(value.message) : '';
                }
                switch (event.event) {
                    case 'text':
                        if (event.text.length === 0) {
                            return '';
                        }
                        this.atLineStart = event.text.endsWith('\n');
                        return event.text;
                    case 'toolCall':
                        return this.line(`→ ${event.tool} ${JSON.stringify(event.arguments)}`);
                    case 'toolResult':
                        return this.line(`${event.isError ? '✗' : '←'} ${event.result}`);
                    default:
                        return value.message ? this.line(value.message) : '';
                }
            }
            default:
                return '';
        }
    }

    /** The closing lines of a finished run: the answer, the stop reason and usage, and which model answered. */
    formatResult(result: AgentRunResult): string {
        const usage = `${result.usage.promptTokens} prompt + ${result.usage.completionTokens} completion tokens`;
        const model = modelInfo(result.model);
        return (
            this.line(`Answer: ${result.answer}`) +
            `(${result.stopReason}; ${result.steps.length} tool call(s); ${usage})\n` +
            (model ? `model: ${describeModel(model)}\n` : '')
        );
    }

    private line(text: string): string {
        const prefix = this.atLineStart ? '' : '\n';
        this.atLineStart = true;
        return `${prefix}${text}\n`;
    }
}

/** The message shown in the progress notification for one value, or undefined to keep the last. */
export function notificationMessage(value: RunProgressValue): string | undefined {
    if (value.kind !== 'report' || !value.llamaAgent) {
        return undefined;
    }
    const event = value.llamaAgent;
    switch (event.event) {
        case 'toolCall':
            return shorten(`calling ${event.tool} ${JSON.stringify(event.arguments)}`, NOTIFICATION_LIMIT);
        case 'toolResult':
            return shorten(`${event.tool} ${event.isError ? 'failed' : 'returned'}: ${event.result}`, NOTIFICATION_LIMIT);
        default:
            return undefined;
    }
}

/** The information message at the end of a run. */
export function answerMessage(result: AgentRunResult): string {
    const calls = result.steps.length;
    const suffix = result.stopReason === 'answer' ? '' : ` (stopped: ${result.stopReason})`;
    const tools = [...new Set(result.steps.map((step) => step.tool))].join(', ');
    const detail = calls === 0 ? 'no tool calls' : `${calls} tool call${calls === 1 ? '' : 's'}: ${tools}`;
    return `Answer: ${shorten(result.answer, 400)} (${detail})${suffix}`;
}
