import { commands, extensions, Uri, window, workspace } from 'vscode';

// vscode-languageclient needs more of `vscode` than the mock has; DaemonManager gets its
// clients from a factory here, so only the enums are needed.
jest.mock('vscode-languageclient/node', () => ({
    LanguageClient: jest.fn(),
    RevealOutputChannelOn: { Never: 4 },
    State: { Stopped: 1, Starting: 3, Running: 2 },
}));
import { registerLogger } from '../../src/common/logging';
import { getInterpreterPath } from '../../src/common/python';
import { agentArgs, agentFeatures, readAgentSettings } from '../../src/agentSettings';
import { DaemonFeatures, DaemonManager, discoverServer, DiscoveryDeps, FIX_HINT, NO_FEATURES } from '../../src/common/server';
import { readServerSettings } from '../../src/common/settings';
import { SERVER, SETTINGS } from './fixtures';

/** Fake file system and PATH: `executables` are the files that exist and may be run. */
function deps(options: { executables?: string[]; python?: string; moduleRuns?: boolean; onPath?: Record<string, string> }) {
    const executables = new Set(options.executables ?? []);
    const calls: string[] = [];
    const d: DiscoveryDeps = {
        platform: 'linux',
        pythonInterpreter: async () => {
            calls.push('python');
            return options.python;
        },
        isExecutable: async (file) => executables.has(file),
        findOnPath: async (name) => {
            calls.push(`path:${name}`);
            return options.onPath?.[name];
        },
        runsDaemonModule: async (python) => {
            calls.push(`module:${python}`);
            return options.moduleRuns ?? false;
        },
    };
    return { d, calls };
}

describe('server discovery order', () => {
    test('1. the llamaAgent.server.command setting wins, with llamaAgent.server.args', async () => {
        const { d, calls } = deps({ executables: ['/opt/la/bin/llama-agent'], python: '/venv/bin/python', onPath: { 'llama-agent': '/usr/bin/llama-agent' } });
        const found = await discoverServer({ ...SERVER, serverCommand: '/opt/la/bin/llama-agent', serverArgs: ['serve', '--lazy-model'] }, d);
        expect(found).toEqual({
            ok: true,
            tried: [],
            server: { command: '/opt/la/bin/llama-agent', args: ['serve', '--lazy-model'], source: 'setting' },
        });
        expect(calls).toEqual([]);
    });

    test('a bare command name in the setting is looked up on PATH', async () => {
        const { d } = deps({ executables: ['/usr/local/bin/la'], onPath: { la: '/usr/local/bin/la' } });
        const found = await discoverServer({ ...SERVER, serverCommand: 'la' }, d);
        expect(found.ok && found.server.command).toBe('/usr/local/bin/la');
    });

    test('a setting that points nowhere is an error naming the setting; nothing else is tried', async () => {
        const { d, calls } = deps({ python: '/venv/bin/python', executables: ['/venv/bin/llama-agent'] });
        const found = await discoverServer({ ...SERVER, serverCommand: '/nowhere/llama-agent' }, d);
        expect(found.ok).toBe(false);
        expect(!found.ok && found.message).toContain('"llamaAgent.server.command" is "/nowhere/llama-agent", which is not an executable file');
        expect(calls).toEqual([]);
    });

    test('2a. the Python environment: the llama-agent script beside the interpreter', async () => {
        const { d, calls } = deps({
            python: '/venv/bin/python',
            executables: ['/venv/bin/llama-agent'],
            onPath: { 'llama-agent': '/usr/bin/llama-agent' },
        });
        const found = await discoverServer(SERVER, d);
        expect(found).toMatchObject({ ok: true, server: { command: '/venv/bin/llama-agent', args: ['serve'], source: 'python' } });
        expect(calls).toEqual(['python']);
    });

    test('2b. the Python environment: python -m llama_agent when there is no script', async () => {
        const { d, calls } = deps({ python: '/venv/bin/python', moduleRuns: true, onPath: { 'llama-agent': '/usr/bin/llama-agent' } });
        const found = await discoverServer({ ...SERVER, serverArgs: ['serve', '-v'] }, d);
        expect(found).toMatchObject({
            ok: true,
            server: { command: '/venv/bin/python', args: ['-m', 'llama_agent', 'serve', '-v'], source: 'python' },
        });
        expect(calls).toEqual(['python', 'module:/venv/bin/python']);
    });

    test('3. llama-agent on PATH when the environment has no daemon', async () => {
        const { d, calls } = deps({ python: '/usr/bin/python3', onPath: { 'llama-agent': '/home/u/.local/bin/llama-agent' } });
        const found = await discoverServer(SERVER, d);
        expect(found).toMatchObject({ ok: true, server: { command: '/home/u/.local/bin/llama-agent', source: 'path' } });
        expect(found.tried).toEqual(['the Python environment /usr/bin/python3']);
        expect(calls).toEqual(['python', 'module:/usr/bin/python3', 'path:llama-agent']);
    });

    test('nothing found: an error that says which setting to set', async () => {
        const { d } = deps({});
        const found = await discoverServer(SERVER, d);
        expect(found.ok).toBe(false);
        expect(!found.ok && found.message).toBe(
            `Llama Agent cannot find the llama-agent daemon (tried llama-agent on PATH). ${FIX_HINT}`,
        );
        expect(FIX_HINT).toContain('Set "llamaAgent.server.command"');
    });

    test('on Windows the script is llama-agent.exe', async () => {
        const { d } = deps({ python: 'C:\\venv\\Scripts\\python.exe', executables: ['C:\\venv\\Scripts\\llama-agent.exe'] });
        d.platform = 'win32';
        const found = await discoverServer(SERVER, d);
        expect(found.ok && found.server.command).toBe('C:\\venv\\Scripts\\llama-agent.exe');
    });
});

describe('settings', () => {
    function config(values: Record<string, unknown>) {
        (workspace.getConfiguration as jest.Mock).mockReturnValue({ get: (key: string) => values[key] });
    }

    test('read with defaults and cleaned up', () => {
        config({ 'server.command': '  /x/llama-agent ', toolsDirs: ['a', ' ', 'b'], maxSteps: -1 });
        expect(readServerSettings()).toEqual({ serverCommand: '/x/llama-agent', serverArgs: ['serve'] });
        expect(readAgentSettings()).toEqual({
            backend: 'llama',
            modelPath: '',
            remote: { baseUrl: '', model: '', apiKeyEnv: '', maxConcurrentRuns: 4 },
            toolsDirs: ['a', 'b'],
            maxSteps: 5,
        });
        expect((workspace.getConfiguration as jest.Mock).mock.calls[0][0]).toBe('llamaAgent');
    });

    test('the daemon gets --tools-dir per directory and --model, paths resolved', () => {
        const folders = [{ uri: Uri.file('/work/project'), name: 'project', index: 0 }];
        const args = agentArgs(
            { ...SETTINGS, toolsDirs: ['${workspaceFolder}/tools', '/abs/tools', 'rel'], modelPath: '/models/m.gguf' },
            folders,
        );
        expect(args).toEqual([
            '--tools-dir',
            '/work/project/tools',
            '--tools-dir',
            '/abs/tools',
            '--tools-dir',
            '/work/project/rel',
            '--model',
            '/models/m.gguf',
        ]);
    });
});

describe('the Python extension', () => {
    test('no ms-python.python: no interpreter', async () => {
        (extensions.getExtension as jest.Mock).mockReturnValue(undefined);
        await expect(getInterpreterPath()).resolves.toBeUndefined();
    });

    test('its active environment gives the interpreter', async () => {
        const resolveEnvironment = jest.fn(async () => ({ executable: { uri: Uri.file('/venv/bin/python') } }));
        const activate = jest.fn(async () => undefined);
        (extensions.getExtension as jest.Mock).mockReturnValue({
            isActive: false,
            activate,
            exports: {
                ready: Promise.resolve(),
                environments: {
                    getActiveEnvironmentPath: () => ({ id: 'venv', path: '/venv' }),
                    resolveEnvironment,
                    onDidChangeActiveEnvironmentPath: jest.fn(),
                },
            },
        });
        await expect(getInterpreterPath()).resolves.toBe('/venv/bin/python');
        expect(activate).toHaveBeenCalled();
        expect(extensions.getExtension).toHaveBeenCalledWith('ms-python.python');
        expect(resolveEnvironment).toHaveBeenCalledWith({ id: 'venv', path: '/venv' });
    });
});

describe('DaemonManager', () => {
    const log = { info: jest.fn(), warn: jest.fn(), error: jest.fn(), debug: jest.fn(), trace: jest.fn(), show: jest.fn() };
    registerLogger(log as never);
    beforeEach(() => {
        (workspace.getConfiguration as jest.Mock).mockReturnValue({ get: () => undefined });
    });

    function fakeClient(start: () => Promise<void>, experimental: unknown = { llamaAgent: { methods: [] } }) {
        let running = false;
        return {
            start: jest.fn(async () => {
                await start();
                running = true;
            }),
            isRunning: () => running,
            initializeResult: { capabilities: { experimental } },
            onDidChangeState: jest.fn(() => ({ dispose: jest.fn() })),
            stop: jest.fn(async () => {
                running = false;
            }),
            dispose: jest.fn(async () => undefined),
        };
    }

    test('no daemon anywhere: the error offers Open Settings, which opens the llamaAgent.server settings', async () => {
        (window.showErrorMessage as jest.Mock).mockResolvedValue('Open Settings');
        const { d } = deps({});
        const makeClient = jest.fn();
        const manager = new DaemonManager(log as never, agentFeatures, d, makeClient);
        await expect(manager.ensureClient()).resolves.toBeUndefined();
        expect(makeClient).not.toHaveBeenCalled();
        expect(window.showErrorMessage).toHaveBeenCalledWith(expect.stringContaining(FIX_HINT), 'Open Settings', 'Show Log');
        await new Promise((r) => setImmediate(r));
        expect(commands.executeCommand).toHaveBeenCalledWith('workbench.action.openSettings', 'llamaAgent.server');
    });

    test('a daemon that fails to start: the error says so and how to fix it', async () => {
        const { d } = deps({ python: '/venv/bin/python', executables: ['/venv/bin/llama-agent'] });
        const client = fakeClient(async () => {
            throw new Error('spawn EACCES');
        });
        const manager = new DaemonManager(log as never, agentFeatures, d, jest.fn(() => client) as never);
        await expect(manager.ensureClient()).resolves.toBeUndefined();
        const [message] = (window.showErrorMessage as jest.Mock).mock.calls[0];
        expect(message).toContain('the daemon did not start (/venv/bin/llama-agent serve): spawn EACCES');
        expect(message).toContain('llamaAgent.server.command');
    });

    test('starts once, tells listeners, and restart makes a new client', async () => {
        const { d } = deps({ onPath: { 'llama-agent': '/usr/bin/llama-agent' }, executables: [] });
        const clients: ReturnType<typeof fakeClient>[] = [];
        const makeClient = jest.fn(() => {
            const client = fakeClient(async () => undefined);
            clients.push(client);
            return client;
        });
        const manager = new DaemonManager(log as never, agentFeatures, d, makeClient as never);
        const seen: unknown[] = [];
        manager.onDidChangeClient((client) => seen.push(client));
        const [a, b] = await Promise.all([manager.ensureClient(), manager.ensureClient()]);
        expect(a).toBe(b);
        expect(makeClient).toHaveBeenCalledTimes(1);
        expect(makeClient.mock.calls[0]).toEqual([
            { command: '/usr/bin/llama-agent', args: ['serve'], source: 'path' },
            ['serve'],
            log,
            { grantsView: true }, // the Grants view shows the requests: the daemon does not ask
        ]);
        const restarted = await manager.restart();
        expect(clients[0].stop).toHaveBeenCalled();
        expect(restarted).toBe(clients[1]);
        expect(seen).toEqual([clients[0], undefined, clients[1]]);
    });

    test('openai backend without a base URL: an error naming the setting, no daemon started, Open Settings shows the remote settings', async () => {
        (workspace.getConfiguration as jest.Mock).mockReturnValue({
            get: (key: string) => ({ backend: 'openai', 'remote.model': 'm' } as Record<string, unknown>)[key],
        });
        (window.showErrorMessage as jest.Mock).mockResolvedValue('Open Settings');
        const { d, calls } = deps({ onPath: { 'llama-agent': '/usr/bin/llama-agent' } });
        const makeClient = jest.fn();
        const manager = new DaemonManager(log as never, agentFeatures, d, makeClient);
        await expect(manager.ensureClient()).resolves.toBeUndefined();
        expect(makeClient).not.toHaveBeenCalled();
        expect(calls).toEqual([]);
        expect(window.showErrorMessage).toHaveBeenCalledWith(
            expect.stringContaining('"llamaAgent.backend" is "openai", but "llamaAgent.remote.baseUrl" is empty'),
            'Open Settings',
            'Show Log',
        );
        expect(log.error).toHaveBeenCalledWith(expect.stringContaining('"llamaAgent.remote.baseUrl" is empty'));
        await new Promise((r) => setImmediate(r));
        expect(commands.executeCommand).toHaveBeenCalledWith('workbench.action.openSettings', 'llamaAgent.remote');
    });

    test('openai backend: the daemon is started with its flags, and the model of initialize is logged', async () => {
        (workspace.getConfiguration as jest.Mock).mockReturnValue({
            get: (key: string) =>
                ({ backend: 'openai', 'remote.baseUrl': 'http://127.0.0.1:8080/v1', modelPath: '/m.gguf' } as Record<string, unknown>)[key],
        });
        const { d } = deps({ onPath: { 'llama-agent': '/usr/bin/llama-agent' } });
        const model = { backend: 'openai', name: null, baseUrl: 'http://127.0.0.1:8080/v1' };
        const makeClient = jest.fn(() => fakeClient(async () => undefined, { llamaAgent: { methods: [], model } }));
        const manager = new DaemonManager(log as never, agentFeatures, d, makeClient as never);
        await manager.ensureClient();
        expect(log.info).toHaveBeenCalledWith(
            'Starting the daemon: /usr/bin/llama-agent serve --backend openai --base-url http://127.0.0.1:8080/v1 ' +
                '--max-concurrent-runs 4 (from PATH)',
        );
        expect(log.info).toHaveBeenCalledWith("Daemon model: the server's only model (openai at http://127.0.0.1:8080/v1)");
        expect(window.showErrorMessage).not.toHaveBeenCalled();
    });

    test('a server without the llamaAgent capability gets a warning', async () => {
        const { d } = deps({ onPath: { 'llama-agent': '/usr/bin/llama-agent' } });
        const manager = new DaemonManager(log as never, agentFeatures, d, jest.fn(() => fakeClient(async () => undefined, {})) as never);
        await manager.ensureClient();
        expect(window.showWarningMessage).toHaveBeenCalledWith(
            expect.stringContaining('without capabilities.experimental.llamaAgent'),
        );
    });
});

describe('DaemonManager knows no feature: what the features add comes through DaemonFeatures', () => {
    const log = { show: jest.fn() }; // (the logger registered above keeps what is logged)
    const started = { isRunning: () => true, initializeResult: { capabilities: { experimental: { x: 1 } } } };

    function client() {
        return {
            ...started,
            start: jest.fn(async () => undefined),
            onDidChangeState: jest.fn(() => ({ dispose: jest.fn() })),
            stop: jest.fn(async () => undefined),
            dispose: jest.fn(async () => undefined),
        };
    }

    beforeEach(() => {
        (workspace.getConfiguration as jest.Mock).mockReturnValue({ get: () => undefined });
    });

    test("the features' flags follow the server's own arguments, and they are told what initialize said", async () => {
        const features: DaemonFeatures = {
            prepare: jest.fn(() => ({ warnings: ['careful'], args: ['--feature-flag', 'x'] })),
            started: jest.fn(),
        };
        const { d } = deps({ onPath: { 'llama-agent': '/usr/bin/llama-agent' } });
        const makeClient = jest.fn((..._args: unknown[]) => client());
        await new DaemonManager(log as never, features, d, makeClient as never).ensureClient();
        expect(makeClient.mock.calls[0][1]).toEqual(['serve', '--feature-flag', 'x']);
        expect(features.started).toHaveBeenCalledWith('/usr/bin/llama-agent', { x: 1 });
        expect(window.showWarningMessage).toHaveBeenCalledWith('careful');
    });

    test("a feature's problem stops the start before discovery, and Open Settings opens its settings", async () => {
        (window.showErrorMessage as jest.Mock).mockResolvedValue('Open Settings');
        const features: DaemonFeatures = {
            prepare: () => ({ problem: { message: 'no way', settingsQuery: 'llamaAgent.somewhere' }, warnings: [], args: [] }),
            started: jest.fn(),
        };
        const { d, calls } = deps({ onPath: { 'llama-agent': '/usr/bin/llama-agent' } });
        const makeClient = jest.fn();
        await expect(new DaemonManager(log as never, features, d, makeClient).ensureClient()).resolves.toBeUndefined();
        expect(makeClient).not.toHaveBeenCalled();
        expect(calls).toEqual([]);
        expect(window.showErrorMessage).toHaveBeenCalledWith('no way', 'Open Settings', 'Show Log');
        await new Promise((r) => setImmediate(r));
        expect(commands.executeCommand).toHaveBeenCalledWith('workbench.action.openSettings', 'llamaAgent.somewhere');
    });

    test("the features' initializationOptions go to the client, which sends them in initialize", async () => {
        const features: DaemonFeatures = {
            prepare: () => ({ warnings: [], args: [], initializationOptions: { someFeature: true } }),
            started: jest.fn(),
        };
        const { d } = deps({ onPath: { 'llama-agent': '/usr/bin/llama-agent' } });
        const makeClient = jest.fn((..._args: unknown[]) => client());
        await new DaemonManager(log as never, features, d, makeClient as never).ensureClient();
        expect(makeClient.mock.calls[0][3]).toEqual({ someFeature: true });
    });

    test('without features the daemon gets only the server arguments', async () => {
        const { d } = deps({ onPath: { 'llama-agent': '/usr/bin/llama-agent' } });
        const makeClient = jest.fn((..._args: unknown[]) => client());
        await new DaemonManager(log as never, NO_FEATURES, d, makeClient as never).ensureClient();
        expect(makeClient.mock.calls[0][1]).toEqual(['serve']);
    });
});
