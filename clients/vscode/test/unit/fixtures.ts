import type { ToolInfo, ToolsListResult } from '../../src/protocol';
import { AgentSettings, DEFAULT_REMOTE } from '../../src/agentSettings';
import type { ServerSettings } from '../../src/common/settings';

/** The server settings of a fresh install: the daemon found by discovery, started with `serve`. */
export const SERVER: ServerSettings = { serverCommand: '', serverArgs: ['serve'] };

/** The agent's settings of a fresh install: the embedded model, the bundled tools. */
export const SETTINGS: AgentSettings = {
    backend: 'llama',
    modelPath: '',
    remote: DEFAULT_REMOTE,
    toolsDirs: [],
    maxSteps: 5,
};

export const ECHO: ToolInfo = {
    name: 'echo',
    description: 'Returns the given value unchanged.',
    version: '1.0.0',
    inputSchema: {
        type: 'object',
        properties: { value: { type: 'string', description: 'The text to echo back.' } },
        required: ['value'],
        additionalProperties: false,
    },
    world: 'llama-agent:tool/plugin',
    path: '/repo/build/tools/echo.wasm',
    grants: {
        timeoutSeconds: 10,
        memoryBytes: 256 * 1024 * 1024,
        outputBytes: 1024 * 1024,
        dirs: [],
        env: [],
        network: false,
    },
    policyError: null,
};

export const COUNTER: ToolInfo = {
    name: 'counter',
    description: 'Counts to a number.',
    version: '2.1.0',
    inputSchema: {
        type: 'object',
        properties: {
            label: { type: 'string' },
            to: { type: 'integer', minimum: 1, description: 'Where to stop.' },
            ratio: { type: 'number' },
            loud: { type: 'boolean' },
        },
        required: ['to', 'loud'],
    },
    path: '/repo/build/tools/counter.wasm',
    grants: {
        timeoutSeconds: 5,
        memoryBytes: 64 * 1024 * 1024,
        outputBytes: 4096,
        dirs: [{ host: '/data', guest: '/data', mode: 'ro' }],
        env: ['HOME'],
        network: false,
    },
};

export const LISTING: ToolsListResult = {
    tools: [COUNTER, ECHO],
    failed: [{ path: '/repo/build/tools/broken.wasm', error: 'not a valid WebAssembly component: bad magic\nmore detail' }],
};
