import * as fs from 'node:fs';
import * as path from 'node:path';

// src/common/ is what any daemon-backed extension has (the template's rule): finding the server,
// the language client, logging, the Python extension, the VS Code API wrapper. It knows no feature
// of the agent's: it imports nothing outside common/, reads none of the features' settings and
// names none of their commands. Compiled to out/test/unit: the sources are three levels up.
const ROOT = path.join(__dirname, '..', '..', '..');
const COMMON = path.join(ROOT, 'src', 'common');
const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const SERVER_SETTINGS = /^llamaAgent\.(server|trace)\./;
const SERVER_COMMANDS = ['llamaAgent.restart', 'llamaAgent.showLog'];

const sources: [string, string][] = fs
    .readdirSync(COMMON)
    .filter((name) => name.endsWith('.ts'))
    .map((name) => [name, fs.readFileSync(path.join(COMMON, name), 'utf8')]);

function quoted(text: string): RegExp {
    return new RegExp(`['"\`]${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}['"\`]`);
}

test('common/ holds the server, the client, logging, the Python extension, the settings reader and the API wrapper', () => {
    expect(sources.map(([name]) => name).sort()).toEqual(
        ['constants.ts', 'logging.ts', 'python.ts', 'server.ts', 'settings.ts', 'vscodeapi.ts'].sort(),
    );
});

function imports(source: string): string[] {
    return [...source.matchAll(/\bfrom\s+['"]([^'"]+)['"]|\brequire\(\s*['"]([^'"]+)['"]\s*\)/g)].map(
        (match) => match[1] ?? match[2],
    );
}

test('the imports are found', () => {
    const server = sources.find(([name]) => name === 'server.ts')?.[1] ?? '';
    expect(imports(server)).toEqual(expect.arrayContaining(['./constants', './settings', 'vscode-languageclient/node']));
    expect(imports("import { x } from '../feature';")).toEqual(['../feature']);
});

test.each(sources)('common/%s imports nothing outside common/', (_name, source) => {
    expect(imports(source).filter((target) => target.startsWith('..'))).toEqual([]);
});

test("common/ reads none of the features' settings and names none of their commands", () => {
    const settings = Object.keys(manifest.contributes.configuration.properties).filter((key) => !SERVER_SETTINGS.test(key));
    const commands = manifest.contributes.commands
        .map((command: { command: string }) => command.command)
        .filter((id: string) => !SERVER_COMMANDS.includes(id));
    expect(settings).toEqual(expect.arrayContaining(['llamaAgent.backend', 'llamaAgent.toolsDirs', 'llamaAgent.modelPath']));
    expect(commands).toEqual(expect.arrayContaining(['llamaAgent.runAgent', 'llamaAgent.invokeTool']));
    const named: string[] = [];
    for (const [name, source] of sources) {
        for (const key of settings) {
            const short = key.slice('llamaAgent.'.length);
            if (quoted(key).test(source) || quoted(short).test(source)) {
                named.push(`${name}: ${key}`);
            }
        }
        for (const id of commands) {
            if (source.includes(id)) {
                named.push(`${name}: ${id}`);
            }
        }
    }
    expect(named).toEqual([]);
});
