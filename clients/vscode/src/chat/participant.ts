// `@llama` in VS Code's Chat view: each request runs in the chat's daemon conversation (follow-ups
// see the turns before), the answer streams as markdown, each tool call and its result show as
// progress with the call's paths as references, a write is confirmed with buttons in the chat,
// and the turn ends with the model and its tokens, or the daemon's error.

import * as path from 'path';
import * as vscode from 'vscode';
import { ChatDeps, ChatEvent, ChatSession, describeError, turnFooter } from './session';

export const PARTICIPANT_ID = 'llama-agent.llama';
/** The command of a question's buttons: (chatKey, questionId, action). */
export const ANSWER_COMMAND = 'llamaAgent.chat.answer';
/** Chats kept (the daemon keeps 32 conversations per connection, the least recently used go first). */
const MAX_CHATS = 32;
const PROGRESS_LIMIT = 160;

/** What the participant keeps in a response's metadata, to find the chat again on a follow-up. */
export interface ParticipantMetadata {
    chatKey: string;
}

function shorten(text: string, limit = PROGRESS_LIMIT): string {
    const line = text.replace(/\s+/g, ' ').trim();
    return line.length <= limit ? line : `${line.slice(0, limit - 1)}…`;
}

/** A path a tool named, as a file of this machine: the tools see the workspace as /workspace. */
export function hostPath(named: string, root: string | undefined): string | undefined {
    if (root === undefined) {
        return path.isAbsolute(named) ? named : undefined;
    }
    if (named === '/workspace' || named.startsWith('/workspace/')) {
        return path.join(root, named.slice('/workspace'.length));
    }
    return path.isAbsolute(named) ? named : path.join(root, named);
}

/** The chat key of the latest answer of ours in `history`. */
export function chatKeyOf(history: vscode.ChatContext['history']): string | undefined {
    for (let i = history.length - 1; i >= 0; i--) {
        const turn = history[i] as Partial<vscode.ChatResponseTurn>;
        const key = (turn.result?.metadata as Partial<ParticipantMetadata> | undefined)?.chatKey;
        if (typeof key === 'string') {
            return key;
        }
    }
    return undefined;
}

export class ChatParticipantHost implements vscode.Disposable {
    private readonly chats = new Map<string, ChatSession>();
    private counter = 0;

    constructor(
        private readonly deps: ChatDeps,
        private readonly workspaceRoot: () => string | undefined,
    ) {}

    /** The chat of a request: the one its history's answers came from, else a new one. */
    chatFor(context: vscode.ChatContext): { key: string; chat: ChatSession } {
        const known = chatKeyOf(context.history);
        const chat = known !== undefined ? this.chats.get(known) : undefined;
        if (known !== undefined && chat) {
            // Most recently used last, so the oldest goes first.
            this.chats.delete(known);
            this.chats.set(known, chat);
            return { key: known, chat };
        }
        this.counter += 1;
        const key = `chat-${Date.now().toString(36)}-${this.counter}`;
        const created = new ChatSession(this.deps);
        this.chats.set(key, created);
        while (this.chats.size > MAX_CHATS) {
            const [oldest, old] = this.chats.entries().next().value as [string, ChatSession];
            this.chats.delete(oldest);
            void old.forget();
        }
        return { key, chat: created };
    }

    /** A question's button was pressed. */
    answer(chatKey: unknown, questionId: unknown, action: unknown): boolean {
        if (typeof chatKey !== 'string' || typeof questionId !== 'string' || typeof action !== 'string') {
            return false;
        }
        return this.chats.get(chatKey)?.answer(questionId, action) ?? false;
    }

    readonly handler: vscode.ChatRequestHandler = async (request, context, stream, token) => {
        const { key, chat } = this.chatFor(context);
        const metadata: ParticipantMetadata = { chatKey: key };
        const outcome = await chat.run(request.prompt, (event) => this.show(stream, key, event), token);
        switch (outcome.kind) {
            case 'answered':
                stream.markdown(new vscode.MarkdownString('\n\n---\n\n').appendText(turnFooter(outcome.turn)));
                return { metadata };
            case 'cancelled':
                stream.markdown(new vscode.MarkdownString().appendText('\n\n(stopped)'));
                return { metadata };
            case 'failed':
                return { metadata, errorDetails: { message: `Llama Agent: ${describeError(outcome.error)}` } };
        }
    };

    private show(stream: vscode.ChatResponseStream, chatKey: string, event: ChatEvent): void {
        switch (event.kind) {
            case 'answer':
                stream.markdown(event.text);
                return;
            case 'toolCall':
                stream.progress(shorten(`Calling ${event.tool} ${JSON.stringify(event.arguments)}`));
                for (const named of event.paths) {
                    const file = hostPath(named, this.workspaceRoot());
                    if (file !== undefined) {
                        stream.reference(vscode.Uri.file(file));
                    }
                }
                return;
            case 'toolResult':
                stream.progress(shorten(`${event.tool} ${event.isError ? 'failed' : 'returned'}: ${event.result}`));
                return;
            case 'question':
                // The daemon's words, made visible by it: shown as text, never as markdown.
                stream.markdown(new vscode.MarkdownString('\n\n').appendText(event.message).appendMarkdown('\n\n'));
                for (const action of event.actions) {
                    stream.button({ command: ANSWER_COMMAND, title: action, arguments: [chatKey, event.id, action] });
                }
                return;
            case 'questionClosed':
                stream.markdown(
                    new vscode.MarkdownString('\n\n').appendText(`→ ${event.answer ?? 'not answered: the call was refused'}`).appendMarkdown('\n\n'),
                );
                return;
        }
    }

    dispose(): void {
        for (const chat of this.chats.values()) {
            void chat.forget();
        }
        this.chats.clear();
    }
}

/** Registers `@llama` where the editor has a chat host's API; undefined elsewhere (code-server, old VS Code). */
export function registerParticipant(host: ChatParticipantHost, iconPath?: vscode.Uri): vscode.Disposable | undefined {
    const chat = (vscode as { chat?: typeof vscode.chat }).chat;
    if (typeof chat?.createChatParticipant !== 'function') {
        return undefined;
    }
    const participant = chat.createChatParticipant(PARTICIPANT_ID, host.handler);
    if (iconPath) {
        participant.iconPath = iconPath;
    }
    return participant;
}
