// Every VS Code API the extension calls goes through here, so unit tests can stub one function
// at a time (the template's pattern) on top of jest-mock-vscode's `vscode` module.

import {
    CancellationToken,
    commands,
    ConfigurationChangeEvent,
    ConfigurationScope,
    Disposable,
    Extension,
    extensions,
    InputBoxOptions,
    LogOutputChannel,
    MessageItem,
    OutputChannel,
    Progress,
    ProgressOptions,
    QuickPickItem,
    QuickPickOptions,
    TreeDataProvider,
    TreeView,
    window,
    workspace,
    WorkspaceConfiguration,
    WorkspaceFolder,
} from 'vscode';

export function createLogOutputChannel(name: string): LogOutputChannel {
    return window.createOutputChannel(name, { log: true });
}

export function createOutputChannel(name: string): OutputChannel {
    return window.createOutputChannel(name);
}

export function getConfiguration(section: string, scope?: ConfigurationScope): WorkspaceConfiguration {
    return workspace.getConfiguration(section, scope);
}

export function onDidChangeConfiguration(listener: (e: ConfigurationChangeEvent) => unknown): Disposable {
    return workspace.onDidChangeConfiguration(listener);
}

export function getWorkspaceFolders(): readonly WorkspaceFolder[] {
    return workspace.workspaceFolders ?? [];
}

export function registerCommand(command: string, callback: (...args: any[]) => unknown): Disposable {
    return commands.registerCommand(command, callback);
}

export function executeCommand<T = unknown>(command: string, ...rest: unknown[]): Thenable<T> {
    return commands.executeCommand<T>(command, ...rest);
}

export function showInputBox(options: InputBoxOptions, token?: CancellationToken): Thenable<string | undefined> {
    return window.showInputBox(options, token);
}

export function showQuickPick<T extends QuickPickItem>(
    items: readonly T[] | Thenable<readonly T[]>,
    options?: QuickPickOptions,
): Thenable<T | undefined> {
    return window.showQuickPick(items, options);
}

export function showInformationMessage(message: string, ...items: string[]): Thenable<string | undefined> {
    return window.showInformationMessage(message, ...items);
}

export function showWarningMessage(message: string, ...items: string[]): Thenable<string | undefined> {
    return window.showWarningMessage(message, ...items);
}

export function showErrorMessage(message: string, ...items: string[]): Thenable<string | undefined> {
    return window.showErrorMessage(message, ...items);
}

export function showErrorMessageWithItems<T extends MessageItem>(message: string, ...items: T[]): Thenable<T | undefined> {
    return window.showErrorMessage(message, ...items);
}

export function withProgress<R>(
    options: ProgressOptions,
    task: (progress: Progress<{ message?: string; increment?: number }>, token: CancellationToken) => Thenable<R>,
): Thenable<R> {
    return window.withProgress(options, task);
}

export function createTreeView<T>(viewId: string, provider: TreeDataProvider<T>): TreeView<T> {
    return window.createTreeView(viewId, { treeDataProvider: provider, showCollapseAll: true });
}

export function getExtension<T = unknown>(id: string): Extension<T> | undefined {
    return extensions.getExtension<T>(id);
}
