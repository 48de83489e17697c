// The chat features' wiring: the daemon's questions routed through the ConsentBroker, `@llama`
// where the editor has a chat host, the chat panel's command, and the MCP server for agent mode.

import * as vscode from 'vscode';
import { MessageType, ShowMessageRequest } from 'vscode-languageclient/node';
import { readAgentSettings } from '../agentSettings';
import { traceInfo } from '../common/logging';
import type { DaemonManager } from '../common/server';
import { getWorkspaceFolders, registerCommand } from '../common/vscodeapi';
import { registerMcpProvider } from '../mcp';
import { ConsentBroker, MessageAction, MessageRequest } from './consent';
import { OPEN_CHAT_COMMAND, ChatPanel } from './panel';
import { ANSWER_COMMAND, ChatParticipantHost, registerParticipant } from './participant';
import { ChatDeps } from './session';

/** A question as vscode-languageclient asks it when nobody else does: a notification with buttons. */
export async function askInNotification(params: MessageRequest): Promise<MessageAction | null> {
    const actions = params.actions ?? [];
    const show =
        params.type === MessageType.Error
            ? vscode.window.showErrorMessage
            : params.type === MessageType.Warning
              ? vscode.window.showWarningMessage
              : vscode.window.showInformationMessage;
    return (await show(params.message, ...actions)) ?? null;
}

export function registerChat(context: vscode.ExtensionContext, manager: DaemonManager): void {
    const broker = new ConsentBroker(askInNotification);
    const deps: ChatDeps = {
        connect: () => manager.ensureClient(),
        broker,
        maxSteps: () => readAgentSettings().maxSteps,
    };
    const workspaceRoot = () => getWorkspaceFolders()[0]?.uri.fsPath;

    // The daemon's window/showMessageRequest goes through the broker, on each new client.
    let questions: vscode.Disposable | undefined;
    const install = (client: typeof manager.current) => {
        questions?.dispose();
        questions = client?.onRequest(ShowMessageRequest.type, broker.handle);
    };
    manager.onDidChangeClient(install);
    install(manager.current);

    const host = new ChatParticipantHost(deps, workspaceRoot);
    const participant = registerParticipant(host, vscode.Uri.joinPath(context.extensionUri, 'resources', 'llama-agent.svg'));
    traceInfo(
        participant
            ? 'Chat: @llama is registered (in the Chat view, where the editor has a chat host)'
            : 'Chat: this editor has no chat API (vscode.chat): use "Llama Agent: Open Chat"',
    );
    const version = String((context.extension?.packageJSON as { version?: unknown } | undefined)?.version ?? '0');
    context.subscriptions.push(
        { dispose: () => questions?.dispose() },
        host,
        ...(participant ? [participant] : []),
        registerCommand(OPEN_CHAT_COMMAND, () => {
            ChatPanel.show(context.extensionUri, deps, workspaceRoot);
        }),
        registerCommand(ANSWER_COMMAND, (chatKey: unknown, questionId: unknown, action: unknown) =>
            host.answer(chatKey, questionId, action),
        ),
        ...registerMcpProvider(version),
    );
}
