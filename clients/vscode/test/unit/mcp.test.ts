import { LogOutputChannel, Uri, workspace, WorkspaceFolder } from 'vscode';

// vscode-languageclient needs more of `vscode` than the mock has; only discovery is used here.
jest.mock('vscode-languageclient/node', () => ({ LanguageClient: jest.fn(), RevealOutputChannelOn: { Never: 4 }, State: {} }));
import { registerLogger } from '../../src/common/logging';
import type { ServerCommand } from '../../src/common/server';
import { LlamaMcpProvider, MCP_LABEL, MCP_PROVIDER_ID, mcpLaunch, registerMcpProvider } from '../../src/mcp';
import { SETTINGS } from './fixtures';

const FOLDERS = [{ uri: Uri.file('/ws'), name: 'ws', index: 0 }] as unknown as WorkspaceFolder[];

/** What McpStdioServerDefinition's constructor was given. */
class Definition {
    cwd?: Uri;
    constructor(
        readonly label: string,
        readonly command: string,
        readonly args?: string[],
        readonly env?: Record<string, string | number | null>,
        readonly version?: string,
    ) {}
}

let log: { info: jest.Mock; warn: jest.Mock; error: jest.Mock; debug: jest.Mock; trace: jest.Mock };
let configListener: ((event: { affectsConfiguration(setting: string): boolean }) => void) | undefined;
let values: Record<string, unknown>;

beforeEach(() => {
    log = { info: jest.fn(), warn: jest.fn(), error: jest.fn(), debug: jest.fn(), trace: jest.fn() };
    registerLogger(log as unknown as LogOutputChannel);
    values = { toolsDirs: ['/tools'] };
    (workspace.getConfiguration as jest.Mock).mockReturnValue({ get: (key: string) => values[key] });
    (workspace.onDidChangeConfiguration as jest.Mock).mockImplementation((listener) => {
        configListener = listener;
        return { dispose: jest.fn() };
    });
});

test('mcpLaunch: the daemon\'s program with `serve` made `mcp`, the options the MCP face takes, the tool dirs and the workspace', () => {
    const server: ServerCommand = {
        command: '/venv/bin/python',
        args: ['-m', 'llama_agent', 'serve', '--cache-dir', '/cache', '--lazy-model', '--context-size', '8192', '--trusted-tools-dir=/trusted', '--allow-writes'],
        source: 'python',
    };
    const launch = mcpLaunch(server, { ...SETTINGS, toolsDirs: ['${workspaceFolder}/tools', '/abs'], modelPath: '/m.gguf' }, FOLDERS, {
        LLAMA_AGENT_CONFIG_DIR: '/config',
        HOME: '/home/me',
    });
    expect(launch).toEqual({
        command: '/venv/bin/python',
        args: [
            '-m', 'llama_agent', 'mcp',
            '--cache-dir', '/cache', '--trusted-tools-dir=/trusted', '--allow-writes',
            '--tools-dir', '/ws/tools', '--tools-dir', '/abs',
            '--workspace', '/ws',
        ],
        env: { PYTHONUNBUFFERED: '1', LLAMA_AGENT_CONFIG_DIR: '/config' },
        cwd: '/ws',
    });
});

test('mcpLaunch: without `serve`, a Python module in front stays there', () => {
    const server: ServerCommand = { command: '/venv/bin/python', args: ['-m', 'llama_agent', '--cache-dir', '/c'], source: 'setting' };
    expect(mcpLaunch(server, SETTINGS, [], {}).args).toEqual(['-m', 'llama_agent', 'mcp', '--cache-dir', '/c']);
});

test('mcpLaunch: a --workspace in the server arguments is kept, not doubled; no folder, no --workspace', () => {
    const server: ServerCommand = { command: '/bin/llama-agent', args: ['serve', '--workspace', '/elsewhere'], source: 'setting' };
    expect(mcpLaunch(server, SETTINGS, FOLDERS, {}).args).toEqual(['mcp', '--workspace', '/elsewhere']);
    expect(mcpLaunch({ ...server, args: ['serve'] }, SETTINGS, [], {}).args).toEqual(['mcp']);
});

describe('the MCP server definition provider', () => {
    const server: ServerCommand = { command: '/bin/llama-agent', args: ['serve'], source: 'setting' };

    test('one stdio server made from the settings, while llamaAgent.mcp.enabled is not false', async () => {
        const provider = new LlamaMcpProvider(Definition, '0.1.0', async () => server);
        const [definition] = (await provider.provideMcpServerDefinitions()) as unknown as Definition[];
        expect(definition).toMatchObject({ label: MCP_LABEL, command: '/bin/llama-agent', version: '0.1.0' });
        expect(definition.args).toEqual(['mcp', '--tools-dir', '/tools']);
        expect(definition.env).toMatchObject({ PYTHONUNBUFFERED: '1' });

        values['mcp.enabled'] = false;
        expect(await provider.provideMcpServerDefinitions()).toEqual([]);
        provider.dispose();
    });

    test('no daemon program found: no server, and a warning in the log', async () => {
        const provider = new LlamaMcpProvider(Definition, '0.1.0', async () => undefined);
        expect(await provider.provideMcpServerDefinitions()).toEqual([]);
        expect(log.warn).toHaveBeenCalledWith(expect.stringContaining('no llama-agent program found'));
        provider.dispose();
    });

    test('the definitions change when llamaAgent.mcp.enabled or a daemon setting changes, not otherwise', () => {
        const provider = new LlamaMcpProvider(Definition, '0.1.0', async () => server);
        const fired = jest.fn();
        provider.onDidChangeMcpServerDefinitions(fired);
        expect(provider.onDidChangeServerDefinitions).toBe(provider.onDidChangeMcpServerDefinitions); // VS Code 1.100's name
        configListener!({ affectsConfiguration: (s) => s === 'llamaAgent.mcp.enabled' });
        configListener!({ affectsConfiguration: (s) => s === 'llamaAgent.toolsDirs' });
        configListener!({ affectsConfiguration: (s) => s === 'editor.fontSize' });
        expect(fired).toHaveBeenCalledTimes(2);
        provider.dispose();
    });
});

describe('registerMcpProvider', () => {
    test('an editor without the API (VS Code before 1.101): nothing registered, the log says so', () => {
        expect(registerMcpProvider('0.1.0', { lm: {} })).toEqual([]);
        expect(log.info).toHaveBeenCalledWith(expect.stringMatching(/^MCP: agent-mode registration is unavailable/));
    });

    test('an editor where the API is proposed only (calling it throws): nothing registered, the reason logged', () => {
        const register = jest.fn(() => {
            throw new Error('Extension cannot use API proposal: mcpConfigurationProvider');
        });
        expect(registerMcpProvider('0.1.0', { lm: { registerMcpServerDefinitionProvider: register }, McpStdioServerDefinition: Definition })).toEqual([]);
        expect(log.info).toHaveBeenCalledWith(
            'MCP: agent-mode registration is unavailable in this editor: Extension cannot use API proposal: mcpConfigurationProvider',
        );
    });

    test('VS Code 1.101 and newer: the provider is registered under the id package.json contributes', () => {
        const registration = { dispose: jest.fn() };
        const register = jest.fn(() => registration);
        const disposables = registerMcpProvider('0.1.0', { lm: { registerMcpServerDefinitionProvider: register }, McpStdioServerDefinition: Definition });
        expect(register).toHaveBeenCalledWith(MCP_PROVIDER_ID, expect.any(LlamaMcpProvider));
        expect(disposables).toContain(registration);
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const manifest = require('../../../package.json');
        expect(manifest.contributes.mcpServerDefinitionProviders).toEqual([{ id: MCP_PROVIDER_ID, label: MCP_LABEL }]);
        // VS Code 1.100's name for the same contribution.
        expect(manifest.contributes.modelContextServerCollections).toEqual([{ id: MCP_PROVIDER_ID, label: MCP_LABEL }]);
        expect(manifest.contributes.configuration.properties['llamaAgent.mcp.enabled']).toMatchObject({ type: 'boolean', default: true });
        disposables.forEach((d) => d.dispose());
    });
});
