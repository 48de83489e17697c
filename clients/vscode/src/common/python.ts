// The Python extension's active environment, when ms-python.python is installed: its
// interpreter is one place to find the daemon (the template's interpreter discovery).

import type { Disposable, Event, Uri } from 'vscode';
import { PYTHON_EXTENSION_ID } from './constants';
import { traceDebug, traceError } from './logging';
import { getExtension } from './vscodeapi';

interface EnvironmentPath {
    readonly id: string;
    readonly path: string;
}

interface ResolvedEnvironment {
    readonly executable: { readonly uri: Uri | undefined };
}

/** The parts of the Python extension's API used here (stable since 2023). */
export interface PythonExtensionApi {
    ready?: Promise<void>;
    environments?: {
        getActiveEnvironmentPath(resource?: Uri): EnvironmentPath;
        resolveEnvironment(environment: EnvironmentPath | string): Promise<ResolvedEnvironment | undefined>;
        readonly onDidChangeActiveEnvironmentPath: Event<unknown>;
    };
    settings?: {
        getExecutionDetails(resource?: Uri): { execCommand: string[] | undefined };
    };
}

export async function getPythonApi(): Promise<PythonExtensionApi | undefined> {
    const extension = getExtension<PythonExtensionApi>(PYTHON_EXTENSION_ID);
    if (!extension) {
        return undefined;
    }
    try {
        if (!extension.isActive) {
            await extension.activate();
        }
        const api = extension.exports;
        await api?.ready;
        return api;
    } catch (error) {
        traceError('Cannot activate the Python extension', error);
        return undefined;
    }
}

/** The active interpreter's executable, or undefined without the Python extension or an environment. */
export async function getInterpreterPath(resource?: Uri): Promise<string | undefined> {
    const api = await getPythonApi();
    if (!api) {
        return undefined;
    }
    try {
        if (api.environments) {
            const active = api.environments.getActiveEnvironmentPath(resource);
            const resolved = await api.environments.resolveEnvironment(active);
            const executable = resolved?.executable.uri?.fsPath;
            if (executable) {
                return executable;
            }
        }
        const command = api.settings?.getExecutionDetails(resource).execCommand;
        return command && command.length === 1 ? command[0] : undefined;
    } catch (error) {
        traceError('Cannot get the Python interpreter', error);
        return undefined;
    }
}

/** Calls `listener` when the user picks another Python environment. */
export async function onDidChangeInterpreter(listener: () => void): Promise<Disposable | undefined> {
    const api = await getPythonApi();
    if (!api?.environments) {
        return undefined;
    }
    traceDebug('Following the Python extension\'s active environment');
    return api.environments.onDidChangeActiveEnvironmentPath(() => listener());
}
