// Finding the daemon and running it under vscode-languageclient.
//
// Discovery order: the `llamaAgent.server.command` setting; the Python extension's active
// environment (its `llama-agent` script, else `python -m llama_agent`); `llama-agent` on PATH.
// What the extension's features add to the daemon's start (their flags, their settings' checks,
// what they read of `initialize`) comes in through `DaemonFeatures`: this module knows none.

import { execFile } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as readline from 'readline';
import type { Disposable, LogOutputChannel } from 'vscode';
import {
    Executable,
    LanguageClient,
    LanguageClientOptions,
    RevealOutputChannelOn,
    State,
} from 'vscode-languageclient/node';
import { CLIENT_ID, CLIENT_NAME, SERVER_SCRIPT } from './constants';
import { daemonLogSink, traceError, traceInfo, traceWarn } from './logging';
import { getInterpreterPath } from './python';
import { readServerSettings, resolvePath, ServerSettings } from './settings';
import {
    executeCommand,
    getWorkspaceFolders,
    showErrorMessage,
    showWarningMessage,
} from './vscodeapi';

export type ServerSource = 'setting' | 'python' | 'path';

export interface ServerCommand {
    command: string;
    args: string[];
    source: ServerSource;
}

export type Discovery =
    | { ok: true; server: ServerCommand; tried: string[] }
    | { ok: false; message: string; tried: string[] };

export interface DiscoveryDeps {
    platform: NodeJS.Platform;
    pythonInterpreter(): Promise<string | undefined>;
    isExecutable(file: string): Promise<boolean>;
    findOnPath(name: string): Promise<string | undefined>;
    /** Whether `python -m llama_agent --version` is llama-agent's. */
    runsDaemonModule(python: string): Promise<boolean>;
}

export const FIX_HINT =
    'Set "llamaAgent.server.command" to the llama-agent program (e.g. /path/to/llama-agent/.venv/bin/llama-agent), ' +
    'select a Python environment where llama-agent is installed, or put llama-agent on PATH.';

function scriptName(platform: NodeJS.Platform): string {
    return platform === 'win32' ? `${SERVER_SCRIPT}.exe` : SERVER_SCRIPT;
}

function looksLikePath(command: string): boolean {
    return command.includes('/') || command.includes('\\') || command.startsWith('~') || command.includes('${');
}

/** Finds the command that starts the daemon, or says what was tried and how to fix it. */
export async function discoverServer(settings: ServerSettings, deps: DiscoveryDeps): Promise<Discovery> {
    const tried: string[] = [];
    if (settings.serverCommand) {
        const configured = settings.serverCommand;
        const command = looksLikePath(configured) ? resolvePath(configured) : await deps.findOnPath(configured);
        if (command !== undefined && (await deps.isExecutable(command))) {
            return { ok: true, server: { command, args: settings.serverArgs, source: 'setting' }, tried };
        }
        tried.push(`llamaAgent.server.command: ${configured}`);
        return {
            ok: false,
            tried,
            message:
                `Llama Agent: "llamaAgent.server.command" is "${configured}", which is not an executable file` +
                `${looksLikePath(configured) ? '' : ' on PATH'}. Fix the setting: the path of the llama-agent program ` +
                '(e.g. /path/to/llama-agent/.venv/bin/llama-agent), or clear it to use the Python environment or PATH.',
        };
    }

    const python = await deps.pythonInterpreter();
    if (python) {
        const paths = deps.platform === 'win32' ? path.win32 : path.posix;
        const sibling = paths.join(paths.dirname(python), scriptName(deps.platform));
        if (await deps.isExecutable(sibling)) {
            return { ok: true, server: { command: sibling, args: settings.serverArgs, source: 'python' }, tried };
        }
        if (await deps.runsDaemonModule(python)) {
            return {
                ok: true,
                server: { command: python, args: ['-m', 'llama_agent', ...settings.serverArgs], source: 'python' },
                tried,
            };
        }
        tried.push(`the Python environment ${python}`);
    }

    const onPath = await deps.findOnPath(scriptName(deps.platform));
    if (onPath !== undefined) {
        return { ok: true, server: { command: onPath, args: settings.serverArgs, source: 'path' }, tried };
    }
    tried.push(`${SERVER_SCRIPT} on PATH`);
    return {
        ok: false,
        tried,
        message: `Llama Agent cannot find the llama-agent daemon (tried ${tried.join(', ')}). ${FIX_HINT}`,
    };
}

async function isExecutable(file: string): Promise<boolean> {
    try {
        const stat = await fs.promises.stat(file);
        if (!stat.isFile()) {
            return false;
        }
        await fs.promises.access(file, process.platform === 'win32' ? fs.constants.F_OK : fs.constants.X_OK);
        return true;
    } catch {
        return false;
    }
}

async function findOnPath(name: string): Promise<string | undefined> {
    const dirs = (process.env.PATH ?? '').split(path.delimiter).filter((d) => d.length > 0);
    const extensions =
        process.platform === 'win32' && !path.extname(name) ? (process.env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';') : [''];
    for (const dir of dirs) {
        for (const ext of extensions) {
            const candidate = path.join(dir, name + ext);
            if (await isExecutable(candidate)) {
                return candidate;
            }
        }
    }
    return undefined;
}

function runsDaemonModule(python: string): Promise<boolean> {
    return new Promise((resolve) => {
        execFile(python, ['-m', 'llama_agent', '--version'], { timeout: 20000 }, (error, stdout, stderr) => {
            resolve(!error && /^llama-agent\b/m.test(`${stdout}${stderr}`));
        });
    });
}

export const nodeDiscoveryDeps: DiscoveryDeps = {
    platform: process.platform,
    pythonInterpreter: () => getInterpreterPath(getWorkspaceFolders()[0]?.uri),
    isExecutable,
    findOnPath,
    runsDaemonModule,
};

/** The command line, and where the command came from, for the log. */
export function describeServer(server: ServerCommand, args: string[] = server.args): string {
    const from = { setting: 'llamaAgent.server.command', python: 'the Python environment', path: 'PATH' }[server.source];
    return `${[server.command, ...args].join(' ')} (from ${from})`;
}

/**
 * The language client of the daemon `server`, started with `args` (the server's own and the
 * features'); `initializationOptions` (the features') go in its `initialize` request.
 */
export function createClient(
    server: ServerCommand,
    args: string[],
    logChannel: LogOutputChannel,
    initializationOptions?: { [key: string]: unknown },
): LanguageClient {
    const folder = getWorkspaceFolders()[0]?.uri.fsPath;
    const run: Executable = {
        command: server.command,
        args,
        // No `transport`: TransportKind.stdio would append `--stdio`, which the daemon does not take.
        options: { cwd: folder, env: { ...process.env, PYTHONUNBUFFERED: '1' } },
    };
    const pipeLines = (input: NodeJS.ReadableStream, sink: (line: string) => void) =>
        readline.createInterface({ input, crlfDelay: Infinity, terminal: false, historySize: 0 }).on('line', sink);
    const clientOptions: LanguageClientOptions = {
        outputChannel: logChannel,
        traceOutputChannel: logChannel,
        revealOutputChannelOn: RevealOutputChannelOn.Never,
        initializationOptions,
        stdioOptions: {
            stdout: (input, channel) => pipeLines(input, (line) => channel.info(line)),
            stderr: (input, channel) => pipeLines(input, daemonLogSink(channel)),
        },
    };
    return new LanguageClient(CLIENT_ID, CLIENT_NAME, run, clientOptions);
}

/** What Open Settings searches for after an error about finding or starting the daemon. */
export const SETTINGS_FOR_SERVER = 'llamaAgent.server';

/** Why the daemon cannot start, for the person, and what Open Settings searches for to fix it. */
export interface SettingsProblem {
    message: string;
    settingsQuery: string;
}

/** What the features' settings make of one start of the daemon. */
export interface DaemonLaunch {
    /** Set when the daemon cannot start with these settings: nothing is started. */
    problem?: SettingsProblem;
    /** Settings the daemon can start with but that are probably wrong, one message each. */
    warnings: string[];
    /** The features' flags, after the server's own arguments. */
    args: string[];
    /** What the features tell the daemon in `initialize` (`initializationOptions`). */
    initializationOptions?: { [key: string]: unknown };
}

/** The extension's features' part in starting the daemon. */
export interface DaemonFeatures {
    /** Read the features' settings for a start of the daemon. */
    prepare(): DaemonLaunch;
    /** The daemon `program` answered initialize with `experimental` capabilities. */
    started(program: string, experimental: unknown): void;
}

/** No features: the server's own arguments, nothing checked or read. */
export const NO_FEATURES: DaemonFeatures = {
    prepare: () => ({ warnings: [], args: [] }),
    started: () => undefined,
};

type Listener = (client: LanguageClient | undefined) => void;

/** Owns the daemon: starts it on demand, restarts it, tells listeners when it comes and goes. */
export class DaemonManager implements Disposable {
    private client: LanguageClient | undefined;
    private starting: Promise<LanguageClient | undefined> | undefined;
    private readonly listeners: Listener[] = [];
    private stateListener: Disposable | undefined;

    constructor(
        private readonly logChannel: LogOutputChannel,
        private readonly features: DaemonFeatures = NO_FEATURES,
        private readonly deps: DiscoveryDeps = nodeDiscoveryDeps,
        private readonly makeClient: typeof createClient = createClient,
    ) {}

    /** Called with the running client after each start, and with undefined when it stops. */
    onDidChangeClient(listener: Listener): Disposable {
        this.listeners.push(listener);
        return { dispose: () => this.listeners.splice(this.listeners.indexOf(listener), 1) };
    }

    get current(): LanguageClient | undefined {
        return this.client?.isRunning() ? this.client : undefined;
    }

    /** The running client, starting the daemon if needed; undefined (after telling the user) if it cannot start. */
    async ensureClient(): Promise<LanguageClient | undefined> {
        if (this.client?.isRunning()) {
            return this.client;
        }
        if (!this.starting) {
            this.starting = this.start().finally(() => (this.starting = undefined));
        }
        return this.starting;
    }

    async restart(): Promise<LanguageClient | undefined> {
        if (this.starting) {
            await this.starting;
        }
        await this.stop();
        return this.ensureClient();
    }

    async stop(): Promise<void> {
        const client = this.client;
        this.client = undefined;
        this.stateListener?.dispose();
        this.stateListener = undefined;
        if (client) {
            traceInfo('Stopping the daemon');
            try {
                await client.stop(3000);
            } catch (error) {
                traceError('Stopping the daemon', error);
            }
            try {
                await client.dispose(3000);
            } catch {
                // already stopped
            }
            this.fire(undefined);
        }
    }

    dispose(): void {
        void this.stop();
    }

    private fire(client: LanguageClient | undefined): void {
        for (const listener of [...this.listeners]) {
            try {
                listener(client);
            } catch (error) {
                traceError('A daemon listener failed', error);
            }
        }
    }

    private async start(): Promise<LanguageClient | undefined> {
        const launch = this.features.prepare();
        if (launch.problem) {
            traceError(launch.problem.message);
            void this.offerFix(launch.problem.message, launch.problem.settingsQuery);
            return undefined;
        }
        for (const warning of launch.warnings) {
            traceWarn(warning);
            void showWarningMessage(warning);
        }
        const discovery = await discoverServer(readServerSettings(), this.deps);
        if (!discovery.ok) {
            traceError(discovery.message);
            void this.offerFix(discovery.message);
            return undefined;
        }
        const server = discovery.server;
        const args = [...server.args, ...launch.args];
        traceInfo(`Starting the daemon: ${describeServer(server, args)}`);
        const client = this.makeClient(server, args, this.logChannel, launch.initializationOptions);
        try {
            await client.start();
        } catch (error) {
            const message =
                `Llama Agent: the daemon did not start (${[server.command, ...args].join(' ')}): ` +
                `${error instanceof Error ? error.message : String(error)}. See the "Llama Agent" log. ${FIX_HINT}`;
            traceError(message);
            void this.offerFix(message);
            try {
                await client.dispose(2000);
            } catch {
                // it never ran
            }
            return undefined;
        }
        this.features.started(server.command, client.initializeResult?.capabilities?.experimental);
        this.client = client;
        this.stateListener = client.onDidChangeState((event) => {
            if (event.newState === State.Stopped && this.client === client) {
                this.fire(undefined);
            } else if (event.newState === State.Running && this.client === client) {
                this.fire(client);
            }
        });
        this.fire(client);
        return client;
    }

    private async offerFix(message: string, settingsQuery = SETTINGS_FOR_SERVER): Promise<void> {
        const choice = await showErrorMessage(message, 'Open Settings', 'Show Log');
        if (choice === 'Open Settings') {
            await executeCommand('workbench.action.openSettings', settingsQuery);
        } else if (choice === 'Show Log') {
            this.logChannel.show();
        }
    }
}
