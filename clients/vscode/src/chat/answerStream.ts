// The answer text of a model turn as it streams. The daemon's `text` events carry the model's
// raw turn, `{"answer": "..."}` or `{"tool": ...}` (a JSON object, as its grammar has it): a chat
// shows only an answer's decoded text, piece by piece. The daemon's own reader
// (services/agent/turns.py, AnswerStream) works the same way. No `vscode` import here.

const OPENING = '{"answer":"';
/** The positions in OPENING that whitespace may precede. */
const SPACE_BEFORE = new Set([0, 1, 9, 10]);
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

export class AnswerStream {
    /** undefined: not known yet (the opening is still arriving). */
    isAnswer: boolean | undefined = undefined;
    /** Characters of answer text decoded so far. */
    length = 0;
    private matched = 0;
    private held = '';
    private closed = false;

    /** The answer text `piece` completes ('' for a tool call, or an escape cut off until its end arrives). */
    feed(piece: string): string {
        if (this.isAnswer === undefined) {
            piece = this.opening(piece);
        }
        if (!this.isAnswer || this.closed) {
            return '';
        }
        const text = this.body(this.held + piece);
        this.length += text.length;
        return text;
    }

    private opening(piece: string): string {
        let i = 0;
        while (i < piece.length) {
            if (SPACE_BEFORE.has(this.matched)) {
                while (i < piece.length && /\s/.test(piece[i])) {
                    i += 1;
                }
            }
            if (i === piece.length) {
                break;
            }
            if (piece[i] !== OPENING[this.matched]) {
                this.isAnswer = false;
                return '';
            }
            this.matched += 1;
            i += 1;
            if (this.matched === OPENING.length) {
                this.isAnswer = true;
                return piece.slice(i);
            }
        }
        return '';
    }

    private body(text: string): string {
        let out = '';
        let i = 0;
        this.held = '';
        for (;;) {
            const quote = text.indexOf('"', i);
            const backslash = text.indexOf('\\', i);
            const j = quote < 0 ? backslash : backslash < 0 ? quote : Math.min(quote, backslash);
            if (j < 0) {
                return out + text.slice(i);
            }
            out += text.slice(i, j);
            if (text[j] === '"') {
                this.closed = true;
                return out;
            }
            const escape = escapeAt(text, j);
            if (escape === undefined) {
                this.held = text.slice(j);
                return out;
            }
            out += escape[0];
            i = j + escape[1];
        }
    }
}

/** The escape at `text[i]` (a backslash): its text and length; undefined if cut off. */
function escapeAt(text: string, i: number): [string, number] | undefined {
    if (i + 1 >= text.length) {
        return undefined;
    }
    const code = text[i + 1];
    if (code !== 'u') {
        return [ESCAPES[code] ?? code, 2];
    }
    const digits = text.slice(i + 2, i + 6);
    if (digits.length < 4) {
        return undefined;
    }
    // A UTF-16 unit each: a surrogate pair written as two escapes joins up by itself.
    return [/^[0-9a-fA-F]{4}$/.test(digits) ? String.fromCharCode(parseInt(digits, 16)) : '\ufffd', 6];
}
