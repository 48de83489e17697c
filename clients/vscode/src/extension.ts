import type { ExtensionContext } from 'vscode';
import { agentFeatures, RESTART_SETTINGS } from './agentSettings';
import { registerChat } from './chat/register';
import { Commands, invokeToolCommand, listToolsCommand, RUNS_CHANNEL, runAgentCommand } from './commands';
import { LOG_CHANNEL, ServerCommands } from './common/constants';
import { registerLogger, traceError, traceInfo } from './common/logging';
import { onDidChangeInterpreter } from './common/python';
import { DaemonManager } from './common/server';
import { readServerSettings } from './common/settings';
import {
    createLogOutputChannel,
    createOutputChannel,
    createTreeView,
    onDidChangeConfiguration,
    registerCommand,
} from './common/vscodeapi';
import { onGrantsDidChange } from './grants';
import { GRANTS_VIEW, grantsCommandHandlers, GrantsTreeProvider } from './grantsView';
import { onToolsDidChange } from './protocol';
import { TOOLS_VIEW, ToolsTreeProvider } from './toolsView';

let daemon: DaemonManager | undefined;

export async function activate(context: ExtensionContext): Promise<void> {
    const log = createLogOutputChannel(LOG_CHANNEL);
    registerLogger(log);
    const runs = createOutputChannel(RUNS_CHANNEL);
    daemon = new DaemonManager(log, agentFeatures);
    const manager = daemon;

    const tools = new ToolsTreeProvider(() => manager.current);
    const view = createTreeView(TOOLS_VIEW, tools);
    // The Grants view: the badge counts the requests waiting for the person.
    const grants = new GrantsTreeProvider(() => manager.current);
    const grantsView = createTreeView(GRANTS_VIEW, grants);
    grants.onDidChangeTreeData(() => (grantsView.badge = grants.badge()));

    let didChange: { dispose(): void } | undefined;
    let grantsDidChange: { dispose(): void } | undefined;
    manager.onDidChangeClient((client) => {
        didChange?.dispose();
        didChange = client
            ? onToolsDidChange(client, (change) => {
                  traceInfo(`tools/didChange: ${JSON.stringify(change)}`);
                  void tools.refresh();
                  void grants.refresh(); // a changed tool or policy may ask for other grants
              })
            : undefined;
        grantsDidChange?.dispose();
        grantsDidChange = client ? onGrantsDidChange(client, () => void grants.refresh()) : undefined;
        void tools.refresh();
        void grants.refresh();
    });
    const grantsCtx = { connect: () => manager.ensureClient(), refresh: () => grants.refresh() };

    const ctx = {
        connect: () => manager.ensureClient(),
        runs,
        showLog: () => log.show(),
    };
    context.subscriptions.push(
        log,
        runs,
        tools,
        view,
        grants,
        grantsView,
        manager,
        { dispose: () => didChange?.dispose() },
        { dispose: () => grantsDidChange?.dispose() },
        ...Object.entries(grantsCommandHandlers(grantsCtx)).map(([command, handler]) => registerCommand(command, handler)),
        registerCommand(Commands.runAgent, (prompt?: unknown) =>
            runAgentCommand(ctx, typeof prompt === 'string' ? prompt : undefined),
        ),
        registerCommand(Commands.listTools, () => listToolsCommand(ctx)),
        registerCommand(Commands.invokeTool, (target?: unknown) =>
            invokeToolCommand(ctx, target as Parameters<typeof invokeToolCommand>[1]),
        ),
        registerCommand(ServerCommands.restart, async () => {
            const client = await manager.restart();
            if (client) {
                traceInfo('Daemon restarted');
            }
        }),
        registerCommand(ServerCommands.showLog, () => log.show()),
        registerCommand(Commands.refreshTools, async () => {
            await manager.ensureClient();
            await tools.refresh();
        }),
        onDidChangeConfiguration((event) => {
            if (RESTART_SETTINGS.some((setting) => event.affectsConfiguration(setting))) {
                traceInfo('Settings changed: restarting the daemon');
                void manager.restart();
            }
        }),
    );

    // The chat: @llama, the chat panel, and the tools in agent mode (MCP).
    registerChat(context, manager);

    onDidChangeInterpreter(() => {
        if (!readServerSettings().serverCommand) {
            traceInfo('The Python environment changed: restarting the daemon');
            void manager.restart();
        }
    }).then(
        (disposable) => disposable && context.subscriptions.push(disposable),
        (error) => traceError('Cannot follow the Python environment', error),
    );

    void manager.ensureClient();
}

export async function deactivate(): Promise<void> {
    await daemon?.stop();
    daemon = undefined;
}
