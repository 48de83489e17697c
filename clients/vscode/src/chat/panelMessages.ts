// The messages between the chat panel's webview and the extension. The webview shows text from
// the daemon and the model, so what it sends back is checked like any outside input: a message
// that is not exactly one of these is dropped. No `vscode` import here.

import { CALL_ANSWERS } from './consent';

/** Longest prompt the panel sends (the daemon bounds it too). */
export const MAX_PROMPT = 20000;
const MAX_PATH = 4096;

/** What the webview may send. */
export type FromWebview =
    | { type: 'ready' }
    | { type: 'prompt'; text: string }
    | { type: 'stop' }
    | { type: 'newChat' }
    | { type: 'answer'; id: string; action: string }
    | { type: 'open'; path: string };

/** What the extension sends the webview. */
export type ToWebview =
    | { type: 'user'; text: string }
    | { type: 'answer'; text: string }
    | { type: 'answerFinal'; text: string }
    | { type: 'toolCall'; step: number; tool: string; args: string; paths: string[] }
    | { type: 'toolResult'; step: number; tool: string; result: string; isError: boolean }
    | { type: 'question'; id: string; message: string; actions: string[] }
    | { type: 'questionClosed'; id: string; answer: string | null }
    | { type: 'done'; footer: string }
    | { type: 'stopped' }
    | { type: 'error'; message: string }
    | { type: 'busy'; busy: boolean }
    | { type: 'cleared' };

function isRecord(value: unknown): value is Record<string, unknown> {
    return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function onlyKeys(value: Record<string, unknown>, keys: string[]): boolean {
    return Object.keys(value).every((key) => keys.includes(key));
}

/** `raw` as a message of the webview, or undefined when it is anything else. */
export function parseWebviewMessage(raw: unknown): FromWebview | undefined {
    if (!isRecord(raw) || typeof raw.type !== 'string') {
        return undefined;
    }
    switch (raw.type) {
        case 'ready':
        case 'stop':
        case 'newChat':
            return onlyKeys(raw, ['type']) ? { type: raw.type } : undefined;
        case 'prompt': {
            const text = raw.text;
            if (!onlyKeys(raw, ['type', 'text']) || typeof text !== 'string' || text.length > MAX_PROMPT || !text.trim()) {
                return undefined;
            }
            return { type: 'prompt', text };
        }
        case 'answer': {
            const { id, action } = raw;
            if (
                !onlyKeys(raw, ['type', 'id', 'action']) ||
                typeof id !== 'string' ||
                !/^q\d{1,9}$/.test(id) ||
                typeof action !== 'string' ||
                !(CALL_ANSWERS as readonly string[]).includes(action)
            ) {
                return undefined;
            }
            return { type: 'answer', id, action };
        }
        case 'open': {
            const target = raw.path;
            if (!onlyKeys(raw, ['type', 'path']) || typeof target !== 'string' || !target || target.length > MAX_PATH) {
                return undefined;
            }
            return { type: 'open', path: target };
        }
        default:
            return undefined;
    }
}
