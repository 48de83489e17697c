// The packaged .vsix in a real editor: code-server (VS Code 1.100 in the browser), driven by
// headless Chromium through playwright-core, with the command palette as a user would.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Page } from 'playwright-core';
import { CACHE_DIR, CLIENT_DIR, DAEMON, PROMPT, RESULTS_DIR, TEXT, TOOLS_DIR } from '../paths';
import { Editor, startEditor, waitForExtensionLog } from './editor';

const DATA = path.join(CLIENT_DIR, '.code-server');
const SHOTS = path.join(RESULTS_DIR, 'e2e');
/** A second tools directory, where the test drops a broken tool. */
const EXTRA_TOOLS = path.join(DATA, 'extra-tools');

let editor: Editor;
let page: Page;

const clean = (text: string) => text.replace(/\u00a0/g, ' ');

/** The quick input's rows as "label | description | detail" strings, once `ready` says they are complete. */
async function quickPickRows(ready: (rows: string[]) => boolean, timeoutMs = 30000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    let rows: string[] = [];
    while (Date.now() < deadline) {
        rows = await page.locator('.quick-input-list .monaco-list-row').evaluateAll((elements) =>
            elements.map((row) =>
                ['.label-name', '.label-description', '.quick-input-list-label-meta .monaco-icon-label, .quick-input-list-detail']
                    .map((selector) => (row.querySelector(selector)?.textContent ?? '').trim())
                    .join(' | '),
            ),
        );
        if (ready(rows)) {
            return rows.map(clean);
        }
        await page.waitForTimeout(200);
    }
    throw new Error(`quick pick rows never became complete: ${JSON.stringify(rows)}`);
}

/** Waits for a notification toast whose text contains `text`; returns its whole text. */
async function waitForNotification(text: string, timeoutMs: number): Promise<string> {
    const toast = page.locator('.notifications-toasts .notification-toast', { hasText: text }).first();
    await toast.waitFor({ state: 'visible', timeout: timeoutMs });
    return clean(await toast.innerText());
}

/** The text of the output channel shown in the panel. */
async function outputText(): Promise<string> {
    const lines = page.locator('.part.panel .output-view .view-lines');
    await lines.first().waitFor({ state: 'visible', timeout: 10000 });
    return clean((await lines.first().innerText()).replace(/\n+/g, '\n'));
}

async function waitForOutput(check: (text: string) => boolean, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let text = '';
    while (Date.now() < deadline) {
        text = await outputText().catch(() => '');
        if (check(text)) {
            return text;
        }
        await page.waitForTimeout(250);
    }
    throw new Error(`the output panel never showed what was expected; it shows:\n${text}`);
}

describe('the .vsix in code-server', () => {
    before(async () => {
        assert.ok(fs.existsSync(DAEMON), `${DAEMON} is missing`);
        fs.rmSync(DATA, { recursive: true, force: true });
        fs.mkdirSync(EXTRA_TOOLS, { recursive: true });
        editor = await startEditor({
            dataDir: DATA,
            readme: '# A workspace for the Llama Agent end-to-end test\n',
            shotsDir: SHOTS,
            logName: 'code-server.log',
            userSettings: { 'llamaAgent.maxSteps': 3 },
            // To <user-data-dir>/Machine/settings.json on purpose: see EditorOptions.machineSettings.
            machineSettings: {
                'llamaAgent.server.command': DAEMON,
                'llamaAgent.server.args': ['serve', '--cache-dir', CACHE_DIR],
                'llamaAgent.toolsDirs': [TOOLS_DIR, EXTRA_TOOLS],
            },
        });
        const unpacked = fs.readdirSync(editor.extensionsDir).filter((name) => name.startsWith('llama-agent.llama-agent-'));
        assert.equal(unpacked.length, 1, `extensions: ${fs.readdirSync(editor.extensionsDir).join(', ')}`);
        page = editor.page;
    });

    after(async () => {
        await editor?.stop();
    });

    test('List Tools: a quick pick row per tool with its version, description and grants', { timeout: 120000 }, async () => {
        await editor.runCommand('Llama Agent: List Tools');
        const rows = await quickPickRows(
            (r) => r.some((row) => row.startsWith('echo |')) && r.some((row) => row.startsWith('print |')),
            90000,
        );
        await editor.screenshot('list-tools');
        const echo = rows.find((row) => row.startsWith('echo |'))!;
        assert.match(echo, /^echo \| v1\.0\.0 \| Returns the given value unchanged\. — timeout \d+ s · memory .* · no network$/);
        const print = rows.find((row) => row.startsWith('print |'))!;
        assert.match(print, /^print \| v1\.0\.0 \| Prints the given message to standard output\./);
        const title = clean(await page.locator('.quick-input-widget .quick-input-title').innerText());
        assert.match(title, /^Llama Agent: \d+ tools/);
        await page.keyboard.press('Escape');
    });

    test('Invoke Tool…: echo with "Something to echo" shows the whole string', { timeout: 120000 }, async () => {
        await editor.runCommand('Llama Agent: Invoke Tool');
        const filter = page.locator('.quick-input-widget .quick-input-box input');
        await quickPickRows((r) => r.some((row) => row.startsWith('echo |')));
        await filter.fill('echo');
        await page.locator('.quick-input-list .monaco-list-row', { hasText: 'echo' }).first().waitFor();
        await page.keyboard.press('Enter');
        const prompt = page.locator('.quick-input-widget .quick-input-message', { hasText: 'value (string, required)' });
        await prompt.waitFor({ state: 'visible', timeout: 15000 });
        await filter.fill(TEXT);
        await editor.screenshot('invoke-tool-input');
        await page.keyboard.press('Enter');
        const toast = await waitForNotification('echo returned:', 30000);
        await page.waitForTimeout(500); // let the toast finish sliding in
        await editor.screenshot('invoke-tool-result');
        assert.match(toast, new RegExp(`echo returned: ${TEXT}(\\n|$)`));
    });

    test('Run Agent…: progress, the steps in "Llama Agent: Runs", the answer in a notification', { timeout: 300000 }, async () => {
        await editor.runCommand('Llama Agent: Run Agent');
        const input = page.locator('.quick-input-widget .quick-input-box input');
        await page
            .locator('.quick-input-widget .quick-input-message', { hasText: 'What should the agent do?' })
            .waitFor({ state: 'visible', timeout: 15000 });
        await input.fill(PROMPT);
        await page.keyboard.press('Enter');
        const progress = page.locator('.notifications-toasts .notification-toast', { hasText: 'Llama Agent' }).first();
        await progress.waitFor({ state: 'visible', timeout: 30000 });
        // Cancellable: VS Code puts a Cancel button on the progress notification.
        await progress.locator('.monaco-button', { hasText: 'Cancel' }).waitFor({ state: 'visible', timeout: 5000 });
        // The steps stream into "Llama Agent: Runs" while the run goes on.
        await waitForOutput((text) => text.includes(`▶ ${PROMPT}`), 30000);
        await page.waitForTimeout(300); // the toast's slide-in
        await editor.screenshot('run-agent-progress');
        // What the model says and which tools it calls differ between CPUs: assert the shape only.
        const toast = await waitForNotification('Answer:', 240000);
        assert.match(toast, /Answer: .*\((no tool calls|\d+ tool calls?: [a-z_, ]+)\)/s);
        const runs = await waitForOutput((text) => text.includes('Answer:'), 15000);
        await editor.screenshot('run-agent-answer');
        assert.ok(runs.includes(`▶ ${PROMPT}`), runs);
        const calls = runs.split('\n').filter((line) => line.startsWith('→ '));
        const results = runs.split('\n').filter((line) => line.startsWith('← ') || line.startsWith('✗ '));
        assert.equal(calls.length, results.length, runs);
        assert.ok(calls.every((line) => /^→ (echo|print) \{/.test(line)), runs);
        assert.match(runs, /■ done \((answer|maxSteps|maxTokens)\)/);
    });

    test('Tools view: the side bar lists the tools, and a broken tool after tools/didChange', { timeout: 120000 }, async () => {
        await page.locator('.part.activitybar [aria-label^="Llama Agent"]').first().click();
        const rows = page.locator('.part.sidebar .monaco-list-row');
        await rows.filter({ hasText: 'echo' }).first().waitFor({ state: 'visible', timeout: 30000 });
        const labels = (await rows.allInnerTexts()).map(clean);
        await editor.screenshot('tools-view');
        assert.ok(labels.some((l) => /^echo\s*v1\.0\.0/.test(l)), labels.join(' / '));
        assert.ok(labels.some((l) => /^print\s*v1\.0\.0/.test(l)), labels.join(' / '));
        assert.ok(!labels.some((l) => l.includes('Failed to load')), labels.join(' / '));

        // Published the way the daemon expects: written elsewhere, renamed into place.
        fs.writeFileSync(path.join(DATA, 'junk.wasm.tmp'), 'not a WebAssembly component');
        fs.renameSync(path.join(DATA, 'junk.wasm.tmp'), path.join(EXTRA_TOOLS, 'junk.wasm'));
        // The daemon's watcher runs at idle CPU priority: generous on a busy machine.
        await rows.filter({ hasText: 'junk.wasm' }).first().waitFor({ state: 'visible', timeout: 90000 });
        const after = (await rows.allInnerTexts()).map(clean);
        await editor.screenshot('tools-view-failure');
        assert.ok(after.some((l) => l.startsWith('Failed to load (1)')), after.join(' / '));
        assert.ok(after.some((l) => /^junk\.wasm\s*not a valid WebAssembly component/.test(l)), after.join(' / '));
        assert.ok(after.some((l) => /^echo\s*v1\.0\.0/.test(l)), after.join(' / '));
    });

    test('Restart Daemon and Show Log: the log shows the daemon stopping and starting again', { timeout: 120000 }, async () => {
        await editor.runCommand('Llama Agent: Restart Daemon');
        await editor.runCommand('Llama Agent: Show Log');
        // The panel shows the "Llama Agent" log channel (only its last lines are rendered)...
        const shown = await waitForOutput((text) => /\[info\] .*llama-agent/.test(text), 30000);
        assert.ok(!shown.includes('▶'), shown);
        // ...whose whole text VS Code keeps in the session's log folder.
        const log = await waitForExtensionLog(
            editor,
            (text) => text.includes('Stopping the daemon') && (text.match(/Daemon ready/g) ?? []).length >= 2,
            60000,
        );
        await editor.screenshot('show-log');
        const started =
            `Starting the daemon: ${DAEMON} serve --cache-dir ${CACHE_DIR} --tools-dir ${TOOLS_DIR} --tools-dir ${EXTRA_TOOLS}` +
            ' (from llamaAgent.server.command)';
        assert.equal(log.split(started).length - 1, 2, log);
        assert.match(log, /\[info\] \[daemon\] llama-agent: llama-agent .* serving on stdio/);
        assert.ok(log.indexOf('Stopping the daemon') < log.lastIndexOf('Daemon ready'), log);
        // The Tools view follows the new daemon.
        const rows = page.locator('.part.sidebar .monaco-list-row');
        await rows.filter({ hasText: 'echo' }).first().waitFor({ state: 'visible', timeout: 60000 });
        await editor.screenshot('tools-view-after-restart');
    });
});
