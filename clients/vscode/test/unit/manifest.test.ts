import * as fs from 'node:fs';
import * as path from 'node:path';
import { RESTART_SETTINGS } from '../../src/agentSettings';

// Compiled to out/test/unit: the manifest is three levels up.
const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8'));
type Setting = { type?: string; scope?: string; default?: unknown; enum?: string[]; enumDescriptions?: string[]; markdownDescription?: string };
const settings: Record<string, Setting> = manifest.contributes.configuration.properties;
const untrusted = manifest.capabilities?.untrustedWorkspaces;

describe('what a workspace may configure', () => {
    test('the program the extension starts, and its arguments, are never taken from a workspace', () => {
        expect(settings['llamaAgent.server.command'].scope).toBe('machine');
        expect(settings['llamaAgent.server.args'].scope).toBe('machine');
    });

    test('where prompts and the API key go, and which variable holds the key, are never taken from a workspace', () => {
        expect(settings['llamaAgent.remote.baseUrl'].scope).toBe('machine');
        expect(settings['llamaAgent.remote.apiKeyEnv'].scope).toBe('machine');
    });

    test('an untrusted workspace cannot choose the tools, the backend or the model', () => {
        expect(untrusted.supported).toBe('limited');
        expect(untrusted.restrictedConfigurations).toEqual(
            expect.arrayContaining(['llamaAgent.toolsDirs', 'llamaAgent.backend', 'llamaAgent.modelPath']),
        );
        expect(untrusted.description.length).toBeGreaterThan(20);
    });

    test('every setting naming a program, a file or a directory is machine-only or restricted', () => {
        const risky = Object.keys(settings).filter((name) => /command|args|path|dirs|backend|url|env/i.test(name));
        expect(risky.length).toBeGreaterThanOrEqual(7);
        for (const name of risky) {
            const guarded = settings[name].scope === 'machine' || untrusted.restrictedConfigurations.includes(name);
            expect([name, guarded]).toEqual([name, true]);
        }
    });
});

describe('the model backend settings', () => {
    test('llamaAgent.backend: llama (default) or openai, each described, naming its flag', () => {
        const backend = settings['llamaAgent.backend'];
        expect(backend).toMatchObject({ type: 'string', enum: ['llama', 'openai'], default: 'llama', scope: 'machine-overridable' });
        expect(backend.enumDescriptions).toHaveLength(2);
        expect(backend.markdownDescription).toContain('`--backend`');
    });

    test('the openai backend\'s settings, each naming its flag', () => {
        const expected: Record<string, [string, unknown, string]> = {
            'llamaAgent.remote.baseUrl': ['string', '', '`--base-url`'],
            'llamaAgent.remote.model': ['string', '', '`--model`'],
            'llamaAgent.remote.apiKeyEnv': ['string', '', '`--api-key-env`'],
            'llamaAgent.remote.maxConcurrentRuns': ['integer', 4, '`--max-concurrent-runs`'],
        };
        for (const [name, [type, value, flag]] of Object.entries(expected)) {
            expect([name, settings[name]]).toEqual([name, expect.objectContaining({ type, default: value })]);
            expect(settings[name].markdownDescription).toContain(flag);
        }
    });

    test('llamaAgent.modelPath takes a GGUF file or a Hugging Face reference', () => {
        expect(settings['llamaAgent.modelPath'].markdownDescription).toContain('`owner/repo:FILE.gguf`');
        expect(settings['llamaAgent.modelPath'].markdownDescription).toContain('#llamaAgent.remote.model#');
    });

    test('apiKeyEnv takes a variable name, so a pasted key is flagged in the Settings editor', () => {
        const pattern = new RegExp((settings['llamaAgent.remote.apiKeyEnv'] as { pattern: string }).pattern);
        expect(['', 'OPENAI_API_KEY', '_k1'].every((v) => pattern.test(v))).toBe(true);
        expect(['sk-proj-abc', '1KEY', 'A B'].some((v) => pattern.test(v))).toBe(false);
    });

    test('every setting but the per-run and trace ones restarts the daemon', () => {
        // llamaAgent.mcp.enabled changes the MCP server offered to agent mode, not the daemon.
        const perRun = ['llamaAgent.maxSteps', 'llamaAgent.trace.server', 'llamaAgent.mcp.enabled'];
        expect([...RESTART_SETTINGS].sort()).toEqual(Object.keys(settings).filter((name) => !perRun.includes(name)).sort());
    });
});
