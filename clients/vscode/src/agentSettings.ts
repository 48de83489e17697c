// The agent's own settings: the tool directories, the model and its backend, the steps of a run;
// what they add to the daemon's command line, and why the daemon cannot start with them.

import type { WorkspaceFolder } from 'vscode';
import { SETTINGS_SECTION } from './common/constants';
import { traceInfo, traceWarn } from './common/logging';
import type { DaemonFeatures, DaemonLaunch } from './common/server';
import { resolvePath, SERVER_RESTART_SETTINGS, SettingsReader } from './common/settings';
import { showWarningMessage } from './common/vscodeapi';
import { describeModel } from './format';
import { GRANTS_VIEW_OPTIONS } from './grants';
import { LlamaAgentCapabilities, modelInfo } from './protocol';

/** `llama`: the daemon's in-process llama.cpp model; `openai`: a server with an OpenAI-compatible API. */
export type Backend = 'llama' | 'openai';

export interface RemoteSettings {
    /** `--base-url`: the server's OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1. */
    baseUrl: string;
    /** `--model`: the served model's name; empty: the server's only model. */
    model: string;
    /** `--api-key-env`: the name of the environment variable holding the key (never the key). */
    apiKeyEnv: string;
    /** `--max-concurrent-runs`. */
    maxConcurrentRuns: number;
}

export interface AgentSettings {
    backend: Backend;
    /** llama backend: a GGUF path or a Hugging Face reference `owner/repo[@rev]:FILE.gguf`. */
    modelPath: string;
    remote: RemoteSettings;
    toolsDirs: string[];
    maxSteps: number;
}

export const DEFAULT_MAX_STEPS = 5;
export const DEFAULT_BACKEND: Backend = 'llama';
export const DEFAULT_MAX_CONCURRENT_RUNS = 4;
export const DEFAULT_REMOTE: RemoteSettings = {
    baseUrl: '',
    model: '',
    apiKeyEnv: '',
    maxConcurrentRuns: DEFAULT_MAX_CONCURRENT_RUNS,
};

/** What Open Settings searches for after an error about the model backend's settings. */
export const SETTINGS_FOR_BACKEND = 'llamaAgent.remote';

/** The agent's settings whose change needs a new daemon. */
export const AGENT_RESTART_SETTINGS = [
    'backend',
    'modelPath',
    'remote.baseUrl',
    'remote.model',
    'remote.apiKeyEnv',
    'remote.maxConcurrentRuns',
    'toolsDirs',
].map((name) => `${SETTINGS_SECTION}.${name}`);

/** Every setting whose change needs a new daemon: the server's, then the agent's. */
export const RESTART_SETTINGS = [...SERVER_RESTART_SETTINGS, ...AGENT_RESTART_SETTINGS];

export function readAgentSettings(reader: SettingsReader = new SettingsReader()): AgentSettings {
    return {
        backend: reader.text('backend') === 'openai' ? 'openai' : DEFAULT_BACKEND,
        modelPath: reader.text('modelPath'),
        remote: {
            baseUrl: reader.text('remote.baseUrl'),
            model: reader.text('remote.model'),
            apiKeyEnv: reader.text('remote.apiKeyEnv'),
            maxConcurrentRuns: reader.integer('remote.maxConcurrentRuns', DEFAULT_MAX_CONCURRENT_RUNS, 1),
        },
        toolsDirs: (reader.strings('toolsDirs') ?? []).map((d) => d.trim()).filter((d) => d.length > 0),
        maxSteps: reader.integer('maxSteps', DEFAULT_MAX_STEPS, 0),
    };
}

/**
 * Whether `llamaAgent.modelPath` is a Hugging Face reference, `owner/repo:FILE.gguf` or
 * `owner/repo@rev:FILE.gguf`, which the daemon downloads, rather than a file. A path never
 * matches: a Windows drive (`C:\`, `C:/`) has no `owner/` before its colon, and `./`, `~`,
 * `${workspaceFolder}` or a second `/` before the colon are not a repository.
 */
export function isHuggingFaceRef(value: string): boolean {
    return /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*(?:@[^\s:@]+)?:[^\s:]+$/.test(value);
}

/**
 * What the agent's settings add to the daemon's arguments (after `llamaAgent.server.args`):
 * `--tools-dir` per directory, then the flags of the chosen backend only:
 *
 * - llama (the daemon's default, so no `--backend`, which older daemons do not take):
 *   `--model` when `llamaAgent.modelPath` is set, a Hugging Face reference verbatim, a path resolved;
 * - openai: `--backend openai --base-url URL [--model NAME] [--api-key-env VAR] --max-concurrent-runs N`.
 *
 * Check the settings with {@link settingsError} first: this does not refuse an empty base URL.
 */
export function agentArgs(settings: AgentSettings, folders?: readonly WorkspaceFolder[]): string[] {
    const args: string[] = [];
    for (const dir of settings.toolsDirs) {
        args.push('--tools-dir', resolvePath(dir, folders));
    }
    if (settings.backend === 'openai') {
        const remote = settings.remote;
        args.push('--backend', 'openai', '--base-url', remote.baseUrl);
        if (remote.model) {
            args.push('--model', remote.model);
        }
        if (remote.apiKeyEnv) {
            args.push('--api-key-env', remote.apiKeyEnv);
        }
        args.push('--max-concurrent-runs', String(remote.maxConcurrentRuns));
    } else if (settings.modelPath) {
        const model = settings.modelPath;
        args.push('--model', isHuggingFaceRef(model) ? model : resolvePath(model, folders));
    }
    return args;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Why the daemon cannot start with these settings, as a message for the user; undefined when it can. */
export function settingsError(settings: AgentSettings): string | undefined {
    if (settings.backend !== 'openai') {
        return undefined;
    }
    const { baseUrl, apiKeyEnv } = settings.remote;
    if (!baseUrl) {
        return (
            'Llama Agent: "llamaAgent.backend" is "openai", but "llamaAgent.remote.baseUrl" is empty. Set it to the ' +
            "server's OpenAI-compatible base URL (e.g. http://127.0.0.1:8080/v1), or set the backend back to \"llama\"."
        );
    }
    let url: URL | undefined;
    try {
        url = new URL(baseUrl);
    } catch {
        url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
        return (
            `Llama Agent: "llamaAgent.remote.baseUrl" is "${baseUrl}", which is not an http:// or https:// URL ` +
            '(e.g. http://127.0.0.1:8080/v1).'
        );
    }
    if (apiKeyEnv && !ENV_NAME.test(apiKeyEnv)) {
        // Most likely the key itself: it must not end up on a command line.
        return (
            'Llama Agent: "llamaAgent.remote.apiKeyEnv" must be the name of an environment variable that holds ' +
            'the API key (e.g. OPENAI_API_KEY), not the key itself; the daemon was not started.'
        );
    }
    return undefined;
}

/** Settings the daemon can start with but that are probably wrong: one message each, for the log. */
export function settingsWarnings(settings: AgentSettings, env: NodeJS.ProcessEnv = process.env): string[] {
    const warnings: string[] = [];
    if (settings.backend === 'openai') {
        const { apiKeyEnv } = settings.remote;
        if (apiKeyEnv && ENV_NAME.test(apiKeyEnv) && env[apiKeyEnv] === undefined) {
            warnings.push(
                `Llama Agent: "llamaAgent.remote.apiKeyEnv" is "${apiKeyEnv}", but ${apiKeyEnv} is not set in ` +
                    "VS Code's environment, which the daemon inherits: start VS Code from a shell where it is set.",
            );
        }
    }
    return warnings;
}

/**
 * The agent's part in starting the daemon (common/server.ts's DaemonManager knows no feature):
 * its settings checked and turned into flags, the Grants view announced in `initialize`, and what
 * the daemon says of itself (its capabilities, its model) logged once it answered.
 */
export const agentFeatures: DaemonFeatures = {
    prepare(): DaemonLaunch {
        const settings = readAgentSettings();
        const message = settingsError(settings);
        return {
            problem: message === undefined ? undefined : { message, settingsQuery: SETTINGS_FOR_BACKEND },
            warnings: settingsWarnings(settings),
            args: agentArgs(settings),
            initializationOptions: { ...GRANTS_VIEW_OPTIONS },
        };
    },
    started(program: string, experimental: unknown): void {
        const capabilities = (experimental as { llamaAgent?: LlamaAgentCapabilities } | undefined)?.llamaAgent;
        if (!capabilities) {
            const warning = `Llama Agent: ${program} answered initialize without capabilities.experimental.llamaAgent: is it llama-agent?`;
            traceWarn(warning);
            void showWarningMessage(warning);
            return;
        }
        traceInfo(`Daemon ready: ${JSON.stringify(capabilities)}`);
        const model = modelInfo(capabilities.model);
        if (model) {
            traceInfo(`Daemon model: ${describeModel(model)}`);
        }
    },
};
