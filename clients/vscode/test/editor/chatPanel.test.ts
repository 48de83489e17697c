// "Llama Agent: Open Chat" in a real editor: code-server (VS Code 1.100, which has no chat host)
// driven by headless Chromium. The daemon is the real one with a scripted model
// (tests/scripted_daemon.py), so the run is the same on every machine: a write_file call that
// the panel asks about, the answer streamed, a follow-up in the same conversation, a stop.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Frame, FrameLocator, Page } from 'playwright-core';
import { CACHE_DIR, CLIENT_DIR, REPO, RESULTS_DIR, TOOLS_DIR } from '../paths';
import { Editor, startEditor, waitForExtensionLog } from './editor';

const PYTHON = path.join(REPO, '.venv', 'bin', 'python');
// Its own directories: the other editor tests' are theirs.
const DATA = path.join(CLIENT_DIR, '.code-server-chat');
const SHOTS = path.join(RESULTS_DIR, 'chat');
/** write_file, trusted, granted the workspace read-write: its calls are asked about. */
const WRITER = path.join(DATA, 'writer');
const SCRIPT = path.join(DATA, 'script.json');
/**
 * The program the extension is told to start: `serve` runs the daemon with the scripted model,
 * anything else (the `mcp` the agent-mode registration starts) the real llama-agent.
 */
const PROGRAM = path.join(DATA, 'llama-agent');
/** What the scripted model was asked, a JSON line per turn. */
const MODEL_LOG = path.join(DATA, 'model.jsonl');

const PROMPT = 'Write a greeting into notes.txt';
const CONTENT = 'hello from the chat';
const ANSWER = 'I wrote the greeting into notes.txt.';
const FOLLOW_UP = 'Which file was that?';
const FOLLOW_UP_ANSWER = 'It was notes.txt, in the workspace.';
const call = (tool: string, args: Record<string, unknown>) => JSON.stringify({ tool, arguments: args });
const answer = (text: string) => JSON.stringify({ answer: text });

let editor: Editor;
let page: Page;

const clean = (text: string) => text.replace(/\u00a0/g, ' ').trim();

/** The chat panel's page: VS Code puts a webview in an iframe, its content in another inside. */
function chatFrame(): FrameLocator {
    return page.frameLocator('iframe.webview').first().frameLocator('iframe#active-frame');
}

/** The chat panel's page itself, to watch it change. */
async function chatPage(): Promise<Frame> {
    const deadline = Date.now() + 10000;
    for (;;) {
        for (const frame of page.frames()) {
            if (await frame.$('#transcript').catch(() => null)) {
                return frame;
            }
        }
        assert.ok(Date.now() < deadline, 'no frame holds the chat panel');
        await page.waitForTimeout(200);
    }
}

describe('the chat panel in code-server', () => {
    before(async () => {
        assert.ok(fs.existsSync(PYTHON), `${PYTHON} is missing`);
        fs.rmSync(DATA, { recursive: true, force: true });
        fs.mkdirSync(WRITER, { recursive: true });
        fs.copyFileSync(path.join(TOOLS_DIR, 'write_file.wasm'), path.join(WRITER, 'write_file.wasm'));
        fs.writeFileSync(path.join(WRITER, 'write_file.policy.toml'), 'workspace = "rw"\n');
        const long = 'This answer goes on for a while, so that there is time to press Stop. '.repeat(40);
        const script = {
            turns: [
                call('write_file', { path: 'notes.txt', content: CONTENT }),
                answer(ANSWER),
                answer(FOLLOW_UP_ANSWER),
                answer(long),
            ],
            pieceSize: 4,
            pieceDelay: 0.03,
            log: MODEL_LOG,
        };
        fs.writeFileSync(SCRIPT, JSON.stringify(script));
        const program = [
            '#!/bin/sh',
            'if [ "$1" = serve ]; then',
            '    shift',
            `    exec "${PYTHON}" -m tests.scripted_daemon "${SCRIPT}" "$@"`,
            'fi',
            `exec "${path.join(REPO, '.venv', 'bin', 'llama-agent')}" "$@"`,
        ];
        fs.writeFileSync(PROGRAM, program.join('\n') + '\n', { mode: 0o755 });

        editor = await startEditor({
            dataDir: DATA,
            readme: '# A workspace for the chat panel test\n',
            shotsDir: SHOTS,
            logName: 'code-server-chat.log',
            userSettings: { 'llamaAgent.maxSteps': 3 },
            // To <user-data-dir>/Machine/settings.json: see EditorOptions.machineSettings.
            machineSettings: {
                'llamaAgent.server.command': PROGRAM,
                'llamaAgent.server.args': ['serve', '--cache-dir', CACHE_DIR, '--trusted-tools-dir', WRITER],
            },
            env: {
                // The daemon (started by the extension host) runs tests.scripted_daemon from the repository,
                // and keeps its grants in the test's own config directory.
                PYTHONPATH: REPO,
                LLAMA_AGENT_CONFIG_DIR: path.join(DATA, 'config'),
            },
        });
        page = editor.page;
    });

    after(async () => {
        await editor?.stop();
    });

    test('Open Chat: the answer streams, the write is asked in the panel, the call shows its path, the model and tokens end the turn', { timeout: 180000 }, async () => {
        await editor.runCommand('Llama Agent: Open Chat');
        const chat = chatFrame();
        const prompt = chat.locator('#prompt');
        await prompt.waitFor({ state: 'visible', timeout: 30000 });
        await prompt.fill(PROMPT);
        await prompt.press('Enter');

        // The call, with its path as the host's file, then the question with the daemon's buttons.
        const callRow = chat.locator('.tool-call').first();
        await callRow.waitFor({ state: 'visible', timeout: 60000 });
        assert.equal(clean(await callRow.locator('.tool-name').innerText()), 'write_file');
        assert.equal(clean(await callRow.locator('.tool-path').innerText()), path.join(editor.workspace, 'notes.txt'));
        assert.deepEqual(JSON.parse(await callRow.locator('.tool-args').innerText()), { path: 'notes.txt', content: CONTENT });
        const question = chat.locator('.question').first();
        await question.waitFor({ state: 'visible', timeout: 30000 });
        const buttons = (await question.locator('button').allInnerTexts()).map(clean);
        assert.deepEqual(buttons, ['Allow once', 'Always allow in this session', 'Reject']);
        assert.match(clean(await question.locator('.question-text').innerText()), /write_file.*notes\.txt.*Allow this call\?$/s);
        assert.equal(fs.existsSync(path.join(editor.workspace, 'notes.txt')), false, 'written before it was allowed');
        await editor.screenshot('chat-question');
        // Every text the answer shows, as the page changes (a busy machine may be slower to look
        // than the model is to write).
        const frame = await chatPage();
        // (page code as text: these tests are compiled without the DOM's types)
        await frame.evaluate(`(() => {
            const seen = (window.seenAnswers = []);
            new MutationObserver(() => {
                const answers = document.querySelectorAll('.turn.agent .answer');
                const text = answers.length ? answers[answers.length - 1].textContent || '' : '';
                if (text && seen[seen.length - 1] !== text) {
                    seen.push(text);
                }
            }).observe(document.getElementById('transcript'), { subtree: true, childList: true, characterData: true });
        })()`);
        await question.locator('button', { hasText: 'Allow once' }).click();

        // The answer streams in: seen part-way before it is whole.
        const answerText = chat.locator('.turn.agent .answer').last();
        const footer = chat.locator('.turn.agent .footer').first();
        await footer.waitFor({ state: 'visible', timeout: 60000 });
        assert.equal(clean(await answerText.innerText()), ANSWER);
        const seen = (await frame.evaluate('window.seenAnswers')) as string[];
        assert.equal(seen[seen.length - 1], ANSWER);
        assert.ok(seen.length >= 3 && seen.every((text) => ANSWER.startsWith(text)), `not streamed: ${JSON.stringify(seen)}`);
        assert.match(clean(await chat.locator('.question-answer').first().innerText()), /→ Allow once/);
        assert.match(clean(await callRow.locator('.tool-result').innerText()), /^wrote \d+ bytes to notes\.txt$/);
        assert.match(clean(await footer.innerText()), /^scripted\.gguf \(llama\) · \d+ prompt \+ \d+ completion tokens · 1 tool call$/);
        assert.equal(fs.readFileSync(path.join(editor.workspace, 'notes.txt'), 'utf8'), CONTENT);

        // A follow-up in the same conversation: the model's prompt holds the request before it.
        await prompt.fill(FOLLOW_UP);
        await prompt.press('Enter');
        await chat.locator('.turn.agent .footer').nth(1).waitFor({ state: 'visible', timeout: 60000 });
        assert.equal(clean(await chat.locator('.turn.agent .answer').last().innerText()), FOLLOW_UP_ANSWER);
        const asked = fs.readFileSync(MODEL_LOG, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { prompt: string });
        const last = asked[asked.length - 1].prompt;
        assert.ok(last.includes(PROMPT) && last.includes(FOLLOW_UP), `the follow-up's prompt lacks the earlier request:\n${last}`);
        await page.waitForTimeout(300);
        await page.screenshot({ path: path.join(RESULTS_DIR, 'chat-panel.png') });

        // Stop: the long answer is cut short, the panel says so and takes prompts again.
        await prompt.fill('Tell me a long story');
        await prompt.press('Enter');
        const third = chat.locator('.turn.agent').nth(2);
        await third.locator('.answer').waitFor({ state: 'visible', timeout: 60000 });
        await chat.locator('#stop').click();
        await third.locator('.footer', { hasText: 'Stopped.' }).waitFor({ state: 'visible', timeout: 30000 });
        assert.ok(clean(await third.locator('.answer').innerText()).length < 2800);
        assert.equal(await chat.locator('#send').isEnabled(), true);
        await editor.screenshot('chat-stopped');
    });

    test('agent mode: llama-agent mcp is registered, listed and starts; llamaAgent.mcp.enabled false takes it away', { timeout: 120000 }, async () => {
        // The extension is active: the test before opened the chat panel.
        const log = await waitForExtensionLog(editor, (text) => text.includes('MCP server for agent mode:'), 30000);
        // code-server 4.100 is VS Code 1.100: the provider API is there, its contribution point
        // named modelContextServerCollections (1.101: mcpServerDefinitionProviders).
        assert.match(log, /MCP: registered "Llama Agent tools" \(llama-agent mcp\) for agent mode/);
        const expected = [PROGRAM, 'mcp', '--cache-dir', CACHE_DIR, '--trusted-tools-dir', WRITER, '--workspace', editor.workspace].join(' ');
        assert.ok(log.includes(`MCP server for agent mode: ${expected}`), log);
        assert.match(log, /Chat: (this editor has no chat API|@llama is registered)/);

        const listServers = async () => {
            await editor.runCommand('MCP: List Servers');
            // Visible rows only: the palette's own list stays in the page, hidden, and one of its
            // rows ("MCP: Add Server...") matches too.
            const rows = page.locator('.quick-input-list .monaco-list-row:visible');
            await rows.filter({ hasText: 'Add Server' }).first().waitFor({ timeout: 15000 });
            await page.waitForTimeout(500);
            return (await rows.allInnerTexts()).map(clean);
        };
        let rows = await listServers();
        assert.ok(rows.some((row) => /^Llama Agent tools\s*Stopped/.test(row)), rows.join(' / '));
        await page.locator('.quick-input-list .monaco-list-row', { hasText: 'Llama Agent tools' }).first().click();
        await page.locator('.quick-input-list .monaco-list-row', { hasText: 'Start Server' }).first().click();
        // The real MCP face with the test's tools: VS Code says how many tools it found.
        const output = page.locator('.part.panel .output-view .view-lines').first();
        await output.filter({ hasText: 'Discovered 1 tools' }).waitFor({ state: 'visible', timeout: 60000 });
        await editor.screenshot('mcp-server-started');
        rows = await listServers();
        assert.ok(rows.some((row) => /^Llama Agent tools\s*Running/.test(row)), rows.join(' / '));
        await page.keyboard.press('Escape');

        // Turned off in the Settings editor: the provider offers nothing, and VS Code drops the server.
        await editor.runCommand('Preferences: Open User Settings');
        await page.locator('.settings-editor').waitFor({ state: 'visible', timeout: 15000 });
        await page.keyboard.type('llamaAgent.mcp.enabled');
        const checkbox = page.locator('.settings-editor .setting-item-bool .setting-value-checkbox').first();
        await checkbox.waitFor({ state: 'visible', timeout: 15000 });
        assert.equal(await checkbox.getAttribute('aria-checked'), 'true');
        await checkbox.click();
        await waitForExtensionLog(editor, (text) => text.includes('MCP: llamaAgent.mcp.enabled is false: no server for agent mode'), 30000);
        await editor.screenshot('mcp-disabled-setting');
        const deadline = Date.now() + 30000;
        for (;;) {
            rows = await listServers();
            await page.keyboard.press('Escape');
            if (!rows.some((row) => row.startsWith('Llama Agent tools'))) {
                break;
            }
            assert.ok(Date.now() < deadline, `still listed after llamaAgent.mcp.enabled: false: ${rows.join(' / ')}`);
            await page.waitForTimeout(1000);
        }
    });
});
