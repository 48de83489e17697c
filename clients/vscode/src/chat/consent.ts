// Where the daemon's questions (`window/showMessageRequest`) are asked. The daemon asks before a
// tool call that may write, with the actions of CALL_ANSWERS; while a chat run is going on, that
// question belongs in the chat, next to the call it is about, not in a notification in a corner.
// Every other question (a tool's grants) goes to the fallback, VS Code's notification.
// No `vscode` import here.

/** The actions of a question about a call that may write (the daemon's faces/lsp/server.py CALL_ANSWERS). */
export const CALL_ANSWERS = ['Allow once', 'Always allow in this session', 'Reject'] as const;

export type MessageAction = {
    title: string;
};

/** LSP's ShowMessageRequestParams. */
export interface MessageRequest {
    type: number;
    message: string;
    actions?: MessageAction[];
}

/** A question put to the person in a chat. */
export interface ConsentQuestion {
    message: string;
    actions: string[];
}

/** A chat that can ask: resolves to the action's title, or undefined when nobody answered. */
export type ConsentSurface = (question: ConsentQuestion) => Promise<string | undefined>;

export type MessageRequestHandler = (params: MessageRequest) => Promise<MessageAction | null>;

/** Whether `params` is the daemon's question about a call that may write. */
export function isCallQuestion(params: MessageRequest): boolean {
    const titles = (params.actions ?? []).map((action) => action.title);
    return titles.length === CALL_ANSWERS.length && CALL_ANSWERS.every((title, i) => titles[i] === title);
}

/** Routes the daemon's questions: a call's question to the chat run going on, if any; the rest to `fallback`. */
export class ConsentBroker {
    private readonly surfaces: ConsentSurface[] = [];

    constructor(private readonly fallback: MessageRequestHandler) {}

    /** While the returned disposable lives, `surface` asks the calls' questions (the latest one activated wins). */
    activate(surface: ConsentSurface): { dispose(): void } {
        this.surfaces.push(surface);
        return {
            dispose: () => {
                const index = this.surfaces.lastIndexOf(surface);
                if (index >= 0) {
                    this.surfaces.splice(index, 1);
                }
            },
        };
    }

    get active(): boolean {
        return this.surfaces.length > 0;
    }

    /** The handler of `window/showMessageRequest`. */
    readonly handle: MessageRequestHandler = async (params) => {
        const surface = this.surfaces[this.surfaces.length - 1];
        if (surface === undefined || !isCallQuestion(params)) {
            return this.fallback(params);
        }
        const actions = (params.actions ?? []).map((action) => action.title);
        const title = await surface({ message: params.message, actions });
        return title !== undefined && actions.includes(title) ? { title } : null;
    };
}
