// "Llama Agent: Open Chat": a chat in a webview panel, for editors with no chat host (VS Code
// without a chat extension, code-server). The same ChatSession as the participant: the answer
// streams, each tool call shows with its paths, a write is confirmed with buttons in the panel,
// follow-ups continue the conversation, Stop cancels the run, the model and tokens end each turn.
// The webview (resources/chat/) runs with a strict Content-Security-Policy and a nonce, puts
// every text in with textContent, and what it sends back is checked (panelMessages.ts).

import { randomBytes } from 'crypto';
import * as vscode from 'vscode';
import { traceError, traceWarn } from '../common/logging';
import { hostPath } from './participant';
import { FromWebview, parseWebviewMessage, ToWebview } from './panelMessages';
import { ChatDeps, ChatEvent, ChatSession, describeError, turnFooter } from './session';

export const OPEN_CHAT_COMMAND = 'llamaAgent.openChat';
export const PANEL_VIEW_TYPE = 'llamaAgent.chat';
const MEDIA = ['resources', 'chat'];

export function nonce(): string {
    return randomBytes(18).toString('base64').replace(/[^A-Za-z0-9]/g, '');
}

/** The panel's page: nothing loads but its own script (with the nonce) and style sheet. */
export function panelHtml(cspSource: string, script: string, style: string, scriptNonce: string): string {
    const csp = [
        "default-src 'none'",
        `style-src ${cspSource}`,
        `script-src 'nonce-${scriptNonce}'`,
        `img-src ${cspSource}`,
        `font-src ${cspSource}`,
    ].join('; ');
    return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${style}">
<title>Llama Agent</title>
</head>
<body>
<main id="transcript" aria-live="polite"></main>
<form id="composer">
<textarea id="prompt" rows="3" placeholder="Ask the agent; Enter sends, Shift+Enter for a new line" aria-label="Prompt"></textarea>
<div class="actions">
<button type="submit" id="send">Send</button>
<button type="button" id="stop" disabled>Stop</button>
<button type="button" id="new" class="secondary" title="Start a new conversation">New chat</button>
</div>
</form>
<script nonce="${scriptNonce}" src="${script}"></script>
</body>
</html>`;
}

export class ChatPanel implements vscode.Disposable {
    private static current: ChatPanel | undefined;
    private chat: ChatSession;
    private run: vscode.CancellationTokenSource | undefined;
    /** The files the panel showed, which it may open (the webview names no others). */
    private readonly shownPaths = new Set<string>();
    private readonly disposables: vscode.Disposable[] = [];

    /** Shows the panel, creating it on first use. */
    static show(extensionUri: vscode.Uri, deps: ChatDeps, workspaceRoot: () => string | undefined): ChatPanel {
        if (ChatPanel.current) {
            ChatPanel.current.panel.reveal();
            return ChatPanel.current;
        }
        const panel = vscode.window.createWebviewPanel(PANEL_VIEW_TYPE, 'Llama Agent Chat', vscode.ViewColumn.Beside, {
            enableScripts: true,
            retainContextWhenHidden: true,
            localResourceRoots: [vscode.Uri.joinPath(extensionUri, ...MEDIA)],
        });
        ChatPanel.current = new ChatPanel(panel, extensionUri, deps, workspaceRoot);
        return ChatPanel.current;
    }

    constructor(
        readonly panel: vscode.WebviewPanel,
        extensionUri: vscode.Uri,
        private readonly deps: ChatDeps,
        private readonly workspaceRoot: () => string | undefined,
    ) {
        this.chat = new ChatSession(deps);
        const webview = panel.webview;
        const media = (name: string) => webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, ...MEDIA, name)).toString();
        webview.html = panelHtml(webview.cspSource, media('chat.js'), media('chat.css'), nonce());
        this.disposables.push(
            webview.onDidReceiveMessage((raw: unknown) => this.receive(raw)),
            panel.onDidDispose(() => this.dispose()),
        );
    }

    /** A message from the webview: checked, then acted on. */
    receive(raw: unknown): void {
        const message = parseWebviewMessage(raw);
        if (!message) {
            traceWarn(`Chat panel: dropped a malformed message from the webview: ${JSON.stringify(raw)?.slice(0, 200)}`);
            return;
        }
        void this.handle(message).catch((error) => traceError('Chat panel', error));
    }

    private async handle(message: FromWebview): Promise<void> {
        switch (message.type) {
            case 'ready':
                this.post({ type: 'busy', busy: this.chat.running });
                return;
            case 'prompt':
                await this.ask(message.text);
                return;
            case 'stop':
                this.run?.cancel();
                return;
            case 'newChat':
                this.run?.cancel();
                await this.chat.forget();
                this.chat = new ChatSession(this.deps);
                this.post({ type: 'cleared' });
                return;
            case 'answer':
                this.chat.answer(message.id, message.action);
                return;
            case 'open':
                if (this.shownPaths.has(message.path)) {
                    await vscode.window.showTextDocument(vscode.Uri.file(message.path)).then(undefined, () => undefined);
                }
                return;
        }
    }

    /** Runs `prompt` in the panel's conversation (one run at a time). */
    async ask(prompt: string): Promise<void> {
        if (this.chat.running) {
            this.post({ type: 'error', message: 'A run is already going on: wait for it or press Stop.' });
            return;
        }
        const chat = this.chat;
        this.run = new vscode.CancellationTokenSource();
        this.post({ type: 'user', text: prompt });
        this.post({ type: 'busy', busy: true });
        try {
            const outcome = await chat.run(prompt, (event) => this.show(event), this.run.token);
            switch (outcome.kind) {
                case 'answered':
                    if (outcome.turn.answer !== outcome.turn.streamed) {
                        this.post({ type: 'answerFinal', text: outcome.turn.answer });
                    }
                    this.post({ type: 'done', footer: turnFooter(outcome.turn) });
                    break;
                case 'cancelled':
                    this.post({ type: 'stopped' });
                    break;
                case 'failed':
                    this.post({ type: 'error', message: describeError(outcome.error) });
                    break;
            }
        } finally {
            this.run.dispose();
            this.run = undefined;
            this.post({ type: 'busy', busy: false });
        }
    }

    private show(event: ChatEvent): void {
        switch (event.kind) {
            case 'answer':
                this.post({ type: 'answer', text: event.text });
                return;
            case 'toolCall': {
                const root = this.workspaceRoot();
                const paths = event.paths.map((named) => hostPath(named, root) ?? named);
                paths.forEach((file) => this.shownPaths.add(file));
                this.post({ type: 'toolCall', step: event.step, tool: event.tool, args: JSON.stringify(event.arguments), paths });
                return;
            }
            case 'toolResult':
                this.post({ type: 'toolResult', step: event.step, tool: event.tool, result: event.result, isError: event.isError });
                return;
            case 'question':
                this.post({ type: 'question', id: event.id, message: event.message, actions: event.actions });
                return;
            case 'questionClosed':
                this.post({ type: 'questionClosed', id: event.id, answer: event.answer ?? null });
                return;
        }
    }

    private post(message: ToWebview): void {
        void this.panel.webview.postMessage(message);
    }

    dispose(): void {
        if (ChatPanel.current === this) {
            ChatPanel.current = undefined;
        }
        this.run?.cancel();
        void this.chat.forget();
        while (this.disposables.length) {
            this.disposables.pop()?.dispose();
        }
    }
}
