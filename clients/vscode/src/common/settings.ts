import * as os from 'os';
import * as path from 'path';
import type { WorkspaceConfiguration, WorkspaceFolder } from 'vscode';
import { SETTINGS_SECTION } from './constants';
import { getConfiguration, getWorkspaceFolders } from './vscodeapi';

export interface AgentSettings {
    serverCommand: string;
    serverArgs: string[];
    modelPath: string;
    toolsDirs: string[];
    maxSteps: number;
}

export const DEFAULT_SERVER_ARGS = ['serve'];
export const DEFAULT_MAX_STEPS = 5;

/** Settings whose change needs a new daemon. */
export const RESTART_SETTINGS = ['server.command', 'server.args', 'modelPath', 'toolsDirs'].map(
    (name) => `${SETTINGS_SECTION}.${name}`,
);

function stringArray(value: unknown): string[] | undefined {
    return Array.isArray(value) && value.every((v) => typeof v === 'string') ? value : undefined;
}

export function readSettings(config: WorkspaceConfiguration = getConfiguration(SETTINGS_SECTION)): AgentSettings {
    const maxSteps = config.get<number>('maxSteps');
    return {
        serverCommand: (config.get<string>('server.command') ?? '').trim(),
        serverArgs: stringArray(config.get('server.args')) ?? DEFAULT_SERVER_ARGS,
        modelPath: (config.get<string>('modelPath') ?? '').trim(),
        toolsDirs: (stringArray(config.get('toolsDirs')) ?? []).map((d) => d.trim()).filter((d) => d.length > 0),
        maxSteps: typeof maxSteps === 'number' && Number.isInteger(maxSteps) && maxSteps >= 0 ? maxSteps : DEFAULT_MAX_STEPS,
    };
}

/** Expands `~`, `${workspaceFolder}` and `${userHome}`; a relative path is taken from the first workspace folder. */
export function resolvePath(value: string, folders: readonly WorkspaceFolder[] = getWorkspaceFolders()): string {
    const root = folders[0]?.uri.fsPath;
    let expanded = value.replace(/\$\{userHome\}/g, os.homedir());
    if (root !== undefined) {
        expanded = expanded.replace(/\$\{workspaceFolder\}/g, root);
    }
    if (expanded === '~' || expanded.startsWith('~/') || expanded.startsWith('~\\')) {
        expanded = path.join(os.homedir(), expanded.slice(1));
    }
    if (!path.isAbsolute(expanded) && root !== undefined && !expanded.includes('${')) {
        expanded = path.join(root, expanded);
    }
    return expanded;
}

/** The daemon's arguments: `llamaAgent.server.args`, then `--tools-dir` and `--model` from the other settings. */
export function daemonArgs(baseArgs: string[], settings: AgentSettings, folders?: readonly WorkspaceFolder[]): string[] {
    const args = [...baseArgs];
    for (const dir of settings.toolsDirs) {
        args.push('--tools-dir', resolvePath(dir, folders));
    }
    if (settings.modelPath) {
        args.push('--model', resolvePath(settings.modelPath, folders));
    }
    return args;
}
