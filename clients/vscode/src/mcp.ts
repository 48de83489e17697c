// The Wasm tools in VS Code's agent mode: the extension registers `llama-agent mcp` (the daemon's
// MCP face) through vscode.lm.registerMcpServerDefinitionProvider, started with the program the
// daemon is started with, the same tool directories, workspace and grants. The API is final in
// VS Code 1.101 (1.100 has it too, with the provider contributed as modelContextServerCollections,
// so package.json names it under both); @types/vscode here is 1.91, so its few types are declared
// below and the API is detected at run time: an older editor just goes without.

import * as vscode from 'vscode';
import { AgentSettings, readAgentSettings, RESTART_SETTINGS } from './agentSettings';
import { SETTINGS_SECTION } from './common/constants';
import { traceInfo, traceWarn } from './common/logging';
import { discoverServer, nodeDiscoveryDeps, ServerCommand } from './common/server';
import { readServerSettings, resolvePath } from './common/settings';
import { getConfiguration, getWorkspaceFolders, onDidChangeConfiguration } from './common/vscodeapi';

export const MCP_PROVIDER_ID = 'llamaAgent.mcp';
export const MCP_LABEL = 'Llama Agent tools';
export const MCP_ENABLED_SETTING = `${SETTINGS_SECTION}.mcp.enabled`;

/** The MCP face's options that `serve`'s arguments may carry: with a value, and without. */
const MCP_VALUE_FLAGS = new Set(['--tools-dir', '--trusted-tools-dir', '--cache-dir', '--tool-timeout', '--workspace', '--audit-log']);
const MCP_BARE_FLAGS = new Set(['--cache-read-only', '--allow-writes', '-v', '-vv', '--verbose']);

// VS Code 1.101's types (vscode.d.ts), as far as they are used here.
interface McpStdioServerDefinition {
    cwd?: vscode.Uri;
}
type McpStdioServerDefinitionClass = new (
    label: string,
    command: string,
    args?: string[],
    env?: Record<string, string | number | null>,
    version?: string,
) => McpStdioServerDefinition;
export interface McpServerDefinitionProvider {
    readonly onDidChangeMcpServerDefinitions?: vscode.Event<void>;
    provideMcpServerDefinitions(token: vscode.CancellationToken): vscode.ProviderResult<McpStdioServerDefinition[]>;
}
interface McpApi {
    registerMcpServerDefinitionProvider(id: string, provider: McpServerDefinitionProvider): vscode.Disposable;
}

/** How `llama-agent mcp` is started. */
export interface McpLaunch {
    command: string;
    args: string[];
    env: Record<string, string>;
    cwd?: string;
}

/** llamaAgent.mcp.enabled: anything but `false` is on. */
export function mcpEnabled(): boolean {
    return getConfiguration(SETTINGS_SECTION).get<unknown>('mcp.enabled') !== false;
}

/** The options of `serve`'s arguments that the MCP face takes too, in order (the model's are left out). */
export function mcpOptions(args: readonly string[]): string[] {
    const kept: string[] = [];
    for (let i = 0; i < args.length; i++) {
        const arg = args[i];
        const flag = arg.split('=', 1)[0];
        if (MCP_VALUE_FLAGS.has(flag)) {
            if (arg.includes('=')) {
                kept.push(arg);
            } else if (i + 1 < args.length) {
                kept.push(arg, args[i + 1]);
                i += 1;
            }
        } else if (MCP_BARE_FLAGS.has(arg)) {
            kept.push(arg);
        }
    }
    return kept;
}

/**
 * `llama-agent mcp` as the daemon is started: the server's program and its arguments with `serve`
 * made `mcp` (what comes before it, e.g. `-m llama_agent`, kept; of what follows, the options the
 * MCP face takes), `--tools-dir` per llamaAgent.toolsDirs, and the workspace folder.
 */
export function mcpLaunch(
    server: ServerCommand,
    settings: AgentSettings,
    folders: readonly vscode.WorkspaceFolder[] = getWorkspaceFolders(),
    env: NodeJS.ProcessEnv = process.env,
): McpLaunch {
    const at = server.args.indexOf('serve');
    // Without `serve`, a module run by Python (`-m llama_agent`) stays in front.
    const prefix = at >= 0 ? server.args.slice(0, at) : server.args[0] === '-m' ? server.args.slice(0, 2) : [];
    const options = mcpOptions(server.args.slice(at >= 0 ? at + 1 : prefix.length));
    const args = [...prefix, 'mcp', ...options];
    for (const dir of settings.toolsDirs) {
        args.push('--tools-dir', resolvePath(dir, folders));
    }
    const root = folders[0]?.uri.fsPath;
    if (root !== undefined && !options.some((o) => o === '--workspace' || o.startsWith('--workspace='))) {
        args.push('--workspace', root);
    }
    // Where the daemon keeps its grants and cache, if set: the MCP server's are the same.
    const launchEnv: Record<string, string> = { PYTHONUNBUFFERED: '1' };
    for (const [name, value] of Object.entries(env)) {
        if (name.startsWith('LLAMA_AGENT_') && value !== undefined) {
            launchEnv[name] = value;
        }
    }
    return { command: server.command, args, env: launchEnv, cwd: root };
}

/** The provider of the one MCP server definition; fires when the settings it is made from change. */
export class LlamaMcpProvider implements McpServerDefinitionProvider, vscode.Disposable {
    private readonly changed = new vscode.EventEmitter<void>();
    readonly onDidChangeMcpServerDefinitions = this.changed.event;
    /** VS Code 1.100's name for the same event (its API was proposed then). */
    readonly onDidChangeServerDefinitions = this.changed.event;
    private readonly listener: vscode.Disposable;

    constructor(
        private readonly definitionClass: McpStdioServerDefinitionClass,
        private readonly version: string,
        private readonly discover: () => Promise<ServerCommand | undefined> = discoverDaemon,
    ) {
        this.listener = onDidChangeConfiguration((event) => {
            if ([MCP_ENABLED_SETTING, ...RESTART_SETTINGS].some((setting) => event.affectsConfiguration(setting))) {
                traceInfo('MCP: the settings changed: the server for agent mode is made again');
                this.changed.fire();
            }
        });
    }

    async provideMcpServerDefinitions(): Promise<McpStdioServerDefinition[]> {
        if (!mcpEnabled()) {
            traceInfo(`MCP: ${MCP_ENABLED_SETTING} is false: no server for agent mode`);
            return [];
        }
        const server = await this.discover();
        if (!server) {
            traceWarn('MCP: no llama-agent program found, so agent mode gets no tools from it');
            return [];
        }
        const launch = mcpLaunch(server, readAgentSettings());
        const definition = new this.definitionClass(MCP_LABEL, launch.command, launch.args, launch.env, this.version);
        if (launch.cwd !== undefined) {
            definition.cwd = vscode.Uri.file(launch.cwd);
        }
        traceInfo(`MCP server for agent mode: ${[launch.command, ...launch.args].join(' ')}`);
        return [definition];
    }

    refresh(): void {
        this.changed.fire();
    }

    dispose(): void {
        this.listener.dispose();
        this.changed.dispose();
    }
}

async function discoverDaemon(): Promise<ServerCommand | undefined> {
    const discovery = await discoverServer(readServerSettings(), nodeDiscoveryDeps);
    return discovery.ok ? discovery.server : undefined;
}

/**
 * Registers the provider where the editor has the API; logs why not elsewhere. The API may be
 * there but proposed only (VS Code 1.100, code-server 4.100): then calling it throws.
 */
export function registerMcpProvider(version: string, api: unknown = vscode): vscode.Disposable[] {
    const lm = (api as { lm?: Partial<McpApi> }).lm;
    const definitionClass = (api as { McpStdioServerDefinition?: McpStdioServerDefinitionClass }).McpStdioServerDefinition;
    if (typeof lm?.registerMcpServerDefinitionProvider !== 'function' || typeof definitionClass !== 'function') {
        traceInfo('MCP: agent-mode registration is unavailable in this editor (no vscode.lm.registerMcpServerDefinitionProvider; VS Code 1.101 or newer has it)');
        return [];
    }
    const provider = new LlamaMcpProvider(definitionClass, version);
    try {
        const registration = lm.registerMcpServerDefinitionProvider(MCP_PROVIDER_ID, provider);
        traceInfo(`MCP: registered "${MCP_LABEL}" (llama-agent mcp) for agent mode`);
        return [provider, registration];
    } catch (error) {
        provider.dispose();
        traceInfo(
            `MCP: agent-mode registration is unavailable in this editor: ${error instanceof Error ? error.message : String(error)}`,
        );
        return [];
    }
}
