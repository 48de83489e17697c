import * as fs from 'node:fs';
import * as path from 'node:path';

// Compiled to out/test/unit: the manifest is three levels up.
const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8'));
const settings: Record<string, { scope?: string }> = manifest.contributes.configuration.properties;
const untrusted = manifest.capabilities?.untrustedWorkspaces;

describe('what a workspace may configure', () => {
    test('the program the extension starts, and its arguments, are never taken from a workspace', () => {
        expect(settings['llamaAgent.server.command'].scope).toBe('machine');
        expect(settings['llamaAgent.server.args'].scope).toBe('machine');
    });

    test('an untrusted workspace cannot choose the tools or the model', () => {
        expect(untrusted.supported).toBe('limited');
        expect(untrusted.restrictedConfigurations).toEqual(
            expect.arrayContaining(['llamaAgent.toolsDirs', 'llamaAgent.modelPath']),
        );
        expect(untrusted.description.length).toBeGreaterThan(20);
    });

    test('every setting naming a program, a file or a directory is machine-only or restricted', () => {
        const risky = Object.keys(settings).filter((name) => /command|args|path|dirs/i.test(name));
        expect(risky.length).toBeGreaterThanOrEqual(4);
        for (const name of risky) {
            const guarded = settings[name].scope === 'machine' || untrusted.restrictedConfigurations.includes(name);
            expect([name, guarded]).toEqual([name, true]);
        }
    });
});
