import { Uri, workspace } from 'vscode';
import {
    AgentSettings,
    agentArgs,
    DEFAULT_REMOTE,
    isHuggingFaceRef,
    readAgentSettings,
    RESTART_SETTINGS,
    settingsError,
    settingsWarnings,
} from '../../src/agentSettings';
import { SETTINGS } from './fixtures';

const FOLDERS = [{ uri: Uri.file('/work/project'), name: 'project', index: 0 }];
const REMOTE: AgentSettings = {
    ...SETTINGS,
    backend: 'openai',
    remote: { baseUrl: 'http://127.0.0.1:8080/v1', model: 'qwen3-4b', apiKeyEnv: 'OPENAI_API_KEY', maxConcurrentRuns: 8 },
};

function config(values: Record<string, unknown>) {
    (workspace.getConfiguration as jest.Mock).mockReturnValue({ get: (key: string) => values[key] });
}

describe('reading the backend settings', () => {
    test('the llama backend by default, the remote settings empty, 4 runs at once', () => {
        config({});
        const settings = readAgentSettings();
        expect(settings.backend).toBe('llama');
        expect(settings.remote).toEqual({ baseUrl: '', model: '', apiKeyEnv: '', maxConcurrentRuns: 4 });
    });

    test('the openai backend and its settings, trimmed; a bad backend or run count falls back to the default', () => {
        config({
            backend: 'openai',
            'remote.baseUrl': ' http://h:8080/v1 ',
            'remote.model': ' m ',
            'remote.apiKeyEnv': ' KEY ',
            'remote.maxConcurrentRuns': 2,
        });
        expect(readAgentSettings()).toMatchObject({
            backend: 'openai',
            remote: { baseUrl: 'http://h:8080/v1', model: 'm', apiKeyEnv: 'KEY', maxConcurrentRuns: 2 },
        });
        config({ backend: 'gpt', 'remote.maxConcurrentRuns': 0 });
        expect(readAgentSettings()).toMatchObject({ backend: 'llama', remote: { maxConcurrentRuns: 4 } });
        config({ 'remote.maxConcurrentRuns': 1.5, 'remote.baseUrl': 42 });
        expect(readAgentSettings().remote).toMatchObject({ baseUrl: '', maxConcurrentRuns: 4 });
    });
});

describe('the daemon arguments of each backend', () => {
    test('llama without a model: no backend flag at all (older daemons do not take --backend)', () => {
        expect(agentArgs(SETTINGS, FOLDERS)).toEqual([]);
    });

    test('llama with a GGUF path: --model, resolved like any path; the remote settings are left out', () => {
        const settings = { ...SETTINGS, modelPath: 'models/m.gguf', remote: REMOTE.remote };
        expect(agentArgs(settings, FOLDERS)).toEqual(['--model', '/work/project/models/m.gguf']);
        expect(agentArgs({ ...settings, modelPath: '${workspaceFolder}/m.gguf' }, FOLDERS)).toEqual([
            '--model',
            '/work/project/m.gguf',
        ]);
    });

    test('llama with a Hugging Face reference: --model verbatim, not taken for a relative path', () => {
        for (const ref of [
            'ggml-org/gemma-3-270m-it-GGUF:gemma-3-270m-it-Q8_0.gguf',
            'unsloth/Qwen3-4B-GGUF@main:Qwen3-4B-Q4_K_M.gguf',
            'owner/repo@0123abcd:sub/dir/model.gguf',
        ]) {
            expect(agentArgs({ ...SETTINGS, modelPath: ref }, FOLDERS)).toEqual(['--model', ref]);
        }
    });

    test('openai: --backend, --base-url, --model, --api-key-env, --max-concurrent-runs after the tool directories; modelPath left out', () => {
        const args = agentArgs({ ...REMOTE, modelPath: '/models/m.gguf', toolsDirs: ['tools'] }, FOLDERS);
        expect(args).toEqual([
            '--tools-dir',
            '/work/project/tools',
            '--backend',
            'openai',
            '--base-url',
            'http://127.0.0.1:8080/v1',
            '--model',
            'qwen3-4b',
            '--api-key-env',
            'OPENAI_API_KEY',
            '--max-concurrent-runs',
            '8',
        ]);
    });

    test('openai without a model name or key: only the flags that are set (the server picks its only model)', () => {
        const settings: AgentSettings = { ...REMOTE, remote: { ...DEFAULT_REMOTE, baseUrl: 'https://api.example.com/v1' } };
        expect(agentArgs(settings, FOLDERS)).toEqual([
            '--backend',
            'openai',
            '--base-url',
            'https://api.example.com/v1',
            '--max-concurrent-runs',
            '4',
        ]);
    });
});

describe('Hugging Face references and paths', () => {
    test.each([
        'owner/repo:FILE.gguf',
        'owner/repo@rev:FILE.gguf',
        'my.org/my_repo-GGUF@refs/pr/1:model-Q4_K_M.gguf',
    ])('%s is a reference', (value) => expect(isHuggingFaceRef(value)).toBe(true));

    test.each([
        '/models/m.gguf',
        'models/m.gguf',
        'm.gguf',
        './owner/repo:FILE.gguf',
        '~/models/m.gguf',
        '${workspaceFolder}/m.gguf',
        'C:\\models\\m.gguf',
        'C:/models/m.gguf',
        'a/b/c:FILE.gguf',
        'owner/repo',
        'owner/repo:',
    ])('%s is a path', (value) => expect(isHuggingFaceRef(value)).toBe(false));
});

describe('settings the daemon cannot start with', () => {
    test('the llama backend needs nothing', () => {
        expect(settingsError(SETTINGS)).toBeUndefined();
        expect(settingsError({ ...SETTINGS, remote: { ...DEFAULT_REMOTE, apiKeyEnv: 'sk-not-a-name' } })).toBeUndefined();
        expect(settingsError(REMOTE)).toBeUndefined();
    });

    test('openai with an empty base URL: a message naming both settings', () => {
        const message = settingsError({ ...REMOTE, remote: { ...REMOTE.remote, baseUrl: '' } });
        expect(message).toBe(
            'Llama Agent: "llamaAgent.backend" is "openai", but "llamaAgent.remote.baseUrl" is empty. Set it to the ' +
                "server's OpenAI-compatible base URL (e.g. http://127.0.0.1:8080/v1), or set the backend back to \"llama\".",
        );
    });

    test('openai with a base URL that is not http(s)', () => {
        for (const baseUrl of ['127.0.0.1:8080/v1', 'localhost', 'ftp://h/v1']) {
            expect(settingsError({ ...REMOTE, remote: { ...REMOTE.remote, baseUrl } })).toContain(
                `"llamaAgent.remote.baseUrl" is "${baseUrl}", which is not an http:// or https:// URL`,
            );
        }
    });

    test('an API key pasted into apiKeyEnv is refused, so that it never reaches a command line', () => {
        const message = settingsError({ ...REMOTE, remote: { ...REMOTE.remote, apiKeyEnv: 'sk-proj-abc123' } });
        expect(message).toContain('must be the name of an environment variable');
        expect(message).not.toContain('sk-proj-abc123');
    });

    test('an API key variable that is not set is a warning, not an error', () => {
        expect(settingsWarnings(REMOTE, {})).toEqual([
            'Llama Agent: "llamaAgent.remote.apiKeyEnv" is "OPENAI_API_KEY", but OPENAI_API_KEY is not set in ' +
                "VS Code's environment, which the daemon inherits: start VS Code from a shell where it is set.",
        ]);
        expect(settingsWarnings(REMOTE, { OPENAI_API_KEY: 'k' })).toEqual([]);
        expect(settingsWarnings({ ...SETTINGS, remote: REMOTE.remote }, {})).toEqual([]);
    });
});

test('every setting the daemon is started with restarts it when it changes', () => {
    expect(RESTART_SETTINGS).toEqual([
        'llamaAgent.server.command',
        'llamaAgent.server.args',
        'llamaAgent.backend',
        'llamaAgent.modelPath',
        'llamaAgent.remote.baseUrl',
        'llamaAgent.remote.model',
        'llamaAgent.remote.apiKeyEnv',
        'llamaAgent.remote.maxConcurrentRuns',
        'llamaAgent.toolsDirs',
    ]);
    expect(RESTART_SETTINGS).not.toContain('llamaAgent.maxSteps');
});
