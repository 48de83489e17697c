// The settings every daemon-backed extension has: which program to start and with what
// arguments, and how a setting's path is read. The features' own settings (the model, its
// backend, the tools...) are theirs: see ../agentSettings.ts.

import * as os from 'os';
import * as path from 'path';
import type { WorkspaceConfiguration, WorkspaceFolder } from 'vscode';
import { SETTINGS_SECTION } from './constants';
import { getConfiguration, getWorkspaceFolders } from './vscodeapi';

export interface ServerSettings {
    serverCommand: string;
    serverArgs: string[];
}

export const DEFAULT_SERVER_ARGS = ['serve'];

/** The server settings whose change needs a new daemon. */
export const SERVER_RESTART_SETTINGS = ['server.command', 'server.args'].map((name) => `${SETTINGS_SECTION}.${name}`);

/** Typed reads of one section's settings: a value of the wrong type reads as the fallback. */
export class SettingsReader {
    constructor(private readonly config: WorkspaceConfiguration = getConfiguration(SETTINGS_SECTION)) {}

    /** A string, trimmed; '' when unset or not a string. */
    text(key: string): string {
        const value = this.config.get<unknown>(key);
        return typeof value === 'string' ? value.trim() : '';
    }

    /** An array of strings, or undefined when unset or anything else. */
    strings(key: string): string[] | undefined {
        const value = this.config.get<unknown>(key);
        return Array.isArray(value) && value.every((v) => typeof v === 'string') ? value : undefined;
    }

    /** An integer of at least `minimum`, else `fallback`. */
    integer(key: string, fallback: number, minimum: number): number {
        const value = this.config.get<unknown>(key);
        return typeof value === 'number' && Number.isInteger(value) && value >= minimum ? value : fallback;
    }
}

export function readServerSettings(reader: SettingsReader = new SettingsReader()): ServerSettings {
    return {
        serverCommand: reader.text('server.command'),
        serverArgs: reader.strings('server.args') ?? DEFAULT_SERVER_ARGS,
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
