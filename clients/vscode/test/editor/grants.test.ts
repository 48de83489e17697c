// The Grants view of the packaged .vsix in a real editor: code-server (VS Code 1.100 in the
// browser) driven by headless Chromium through playwright-core (the harness: editor.ts).
//
// The daemon loads a private tools directory (not a trusted one): echo, with a policy asking for a
// directory read-write, a variable and a longer timeout, and list_dir, whose policy asks for the
// workspace. Both requests wait in the view, with the activity bar's badge counting them; "Allow
// once" on echo moves it to Approved. The extension says it has the view (initializationOptions),
// so the daemon puts no question about them in a notification.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Locator, Page } from 'playwright-core';
import { CACHE_DIR, DAEMON, RESULTS_DIR, TOOLS_DIR } from '../paths';
import { Editor, startEditor } from './editor';

const SHOTS = path.join(RESULTS_DIR, 'grants');

// The editor's data in a directory of its own: other editor tests may run at the same time.
let data: string;
let editor: Editor;
let page: Page;
let sharedDir: string;
let workspaceDir: string;

const clean = (text: string) => text.replace(/\u00a0/g, ' ').replace(/\s+/g, ' ').trim();

/** The Grants view's pane in the side bar. */
function grantsPane(): Locator {
    return page.locator('.part.sidebar .pane', { has: page.locator('.pane-header', { hasText: /^\s*Grants/ }) });
}

/** The view's rows, in order (the list's DOM order is not its order: data-index is), each "label description". */
async function grantsRows(): Promise<string[]> {
    const rows = await grantsPane()
        .locator('.monaco-list-row')
        .evaluateAll((elements) =>
            elements.map((row): [number, string] => [
                Number(row.getAttribute('data-index')),
                ['.label-name', '.label-description'].map((selector) => row.querySelector(selector)?.textContent ?? '').join(' '),
            ]),
        );
    return rows.sort((a, b) => a[0] - b[0]).map(([, text]) => clean(text));
}

/** Waits until the rows satisfy `check`; returns them. */
async function waitForRows(check: (rows: string[]) => boolean, what: string, timeoutMs: number): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    let rows: string[] = [];
    while (Date.now() < deadline) {
        rows = await grantsRows();
        if (check(rows)) {
            return rows;
        }
        await page.waitForTimeout(250);
    }
    await page.screenshot({ path: path.join(SHOTS, `timeout-${what.replace(/\W+/g, '-')}.png`) });
    throw new Error(`the Grants view never showed ${what}; it shows: ${JSON.stringify(rows)}`);
}

/** The rows under the group `label` (up to the next group). */
function group(rows: string[], label: string): string[] {
    const start = rows.findIndex((row) => row.startsWith(label));
    if (start < 0) {
        return [];
    }
    const next = rows.findIndex((row, index) => index > start && /^(Waiting for you|Approved) \d+$/.test(row));
    return rows.slice(start + 1, next < 0 ? undefined : next);
}

/** The activity bar badge of the Llama Agent container ('' when none). */
async function badge(): Promise<string> {
    const item = page.locator('.part.activitybar .action-item', { has: page.locator('[aria-label^="Llama Agent"]') }).first();
    const content = item.locator('.badge .badge-content');
    return (await content.count()) > 0 && (await content.first().isVisible()) ? clean(await content.first().innerText()) : '';
}

async function waitForBadge(expected: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let shown = '';
    while (Date.now() < deadline) {
        shown = await badge();
        if (shown === expected) {
            return;
        }
        await page.waitForTimeout(250);
    }
    throw new Error(`the Llama Agent badge shows "${shown}", not "${expected}"`);
}

describe('the Grants view in code-server', () => {
    before(async () => {
        assert.ok(fs.existsSync(DAEMON), `${DAEMON} is missing`);
        data = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-agent-grants-e2e-'));
        const tools = path.join(data, 'tools');
        sharedDir = path.join(data, 'shared');
        for (const dir of [tools, sharedDir]) {
            fs.mkdirSync(dir, { recursive: true });
        }
        // Not a trusted directory: the policies only ask.
        for (const file of ['echo.wasm', 'list_dir.wasm', 'list_dir.policy.toml']) {
            fs.copyFileSync(path.join(TOOLS_DIR, file), path.join(tools, file));
        }
        fs.writeFileSync(
            path.join(tools, 'echo.policy.toml'),
            `env = ["LANG"]\ntimeout_seconds = 20\n\n[[dirs]]\nhost = ${JSON.stringify(sharedDir)}\nguest = "/shared"\nmode = "rw"\n`,
        );

        editor = await startEditor({
            dataDir: data,
            readme: '# A workspace for the Grants view test\n',
            shotsDir: SHOTS,
            logName: 'code-server-grants.log',
            // To <user-data-dir>/Machine/settings.json: see EditorOptions.machineSettings.
            machineSettings: {
                'llamaAgent.server.command': DAEMON,
                'llamaAgent.server.args': ['serve', '--cache-dir', CACHE_DIR, '--lazy-model'],
                'llamaAgent.toolsDirs': [tools],
            },
            // Also the daemon's (it inherits the editor's environment): its grants file goes here.
            env: { LLAMA_AGENT_CONFIG_DIR: path.join(data, 'llama-agent-config') },
            viewport: { width: 1280, height: 800 },
        });
        page = editor.page;
        workspaceDir = editor.workspace;
    });

    after(async () => {
        await editor?.stop();
        if (data) {
            fs.rmSync(data, { recursive: true, force: true });
        }
    });

    test('pending requests show what they ask; "Allow once" moves echo to Approved', { timeout: 180000 }, async () => {
        await page.locator('.part.activitybar [aria-label^="Llama Agent"]').first().click();
        await grantsPane().waitFor({ state: 'visible', timeout: 30000 });
        // Room for the Grants view: a wider side bar (its sash dragged), the Tools view folded.
        const sidebar = await page.locator('.part.sidebar').boundingBox();
        if (sidebar) {
            const edge = sidebar.x + sidebar.width;
            await page.mouse.move(edge, 400);
            await page.mouse.down();
            await page.mouse.move(edge + 300, 400, { steps: 5 });
            await page.mouse.up();
        }
        const toolsHeader = page.locator('.part.sidebar .pane-header', { hasText: /^\s*Tools/ }).first();
        if ((await toolsHeader.getAttribute('aria-expanded')) === 'true') {
            await toolsHeader.click();
        }

        const shared = fs.realpathSync(sharedDir);
        const pending = await waitForRows(
            (rows) => group(rows, 'Waiting for you').some((row) => row.startsWith('list_dir')) && group(rows, 'Waiting for you').some((row) => row.startsWith('echo')),
            'both requests waiting',
            90000,
        );
        const waiting = group(pending, 'Waiting for you');
        assert.ok(pending.includes('Waiting for you 2'), JSON.stringify(pending));
        assert.ok(waiting.includes('echo 1 directory (rw), 1 variable, 1 limit'), JSON.stringify(waiting));
        assert.ok(waiting.includes(`${shared} read-write, at /shared`), JSON.stringify(waiting));
        assert.ok(waiting.includes('LANG environment variable'), JSON.stringify(waiting));
        assert.ok(waiting.includes('time per call 20 s'), JSON.stringify(waiting));
        assert.ok(waiting.includes('list_dir workspace (ro)'), JSON.stringify(waiting));
        assert.ok(waiting.includes(`${fs.realpathSync(workspaceDir)} read-only, the workspace`), JSON.stringify(waiting));
        assert.ok(pending.includes('Approved 0'), JSON.stringify(pending));
        await waitForBadge('2', 15000);
        await page.screenshot({ path: path.join(SHOTS, '01-pending.png') });
        // The extension has the view: the daemon asked nothing in a notification.
        const toasts = (await page.locator('.notifications-toasts .notification-toast').allInnerTexts()).map(clean);
        assert.ok(!toasts.some((toast) => toast.includes('asks for')), JSON.stringify(toasts));

        // Hover echo's row: its inline actions appear; "Allow once" answers the request.
        const echo = grantsPane().locator('.monaco-list-row', { hasText: /^\s*echo/ }).first();
        await echo.hover();
        const actions = (await echo.locator('.actions .action-label').evaluateAll((els) => els.map((el) => el.getAttribute('aria-label') ?? '')));
        assert.deepEqual(actions, ['Allow once', 'Always allow', 'Deny']);
        await page.screenshot({ path: path.join(SHOTS, '02-actions.png') });
        await echo.locator('.actions .action-label[aria-label="Allow once"]').click();

        const approved = await waitForRows(
            (rows) => group(rows, 'Approved').some((row) => row.startsWith('echo')) && !group(rows, 'Waiting for you').some((row) => row.startsWith('echo')),
            'echo approved',
            60000,
        );
        assert.ok(approved.includes('Waiting for you 1'), JSON.stringify(approved));
        assert.ok(group(approved, 'Approved').includes('echo this session'), JSON.stringify(approved));
        assert.ok(group(approved, 'Waiting for you').some((row) => row.startsWith('list_dir')), JSON.stringify(approved));
        await waitForBadge('1', 15000);
        // Expand the approval, so the picture shows what echo now may use.
        await grantsPane().locator('.monaco-list-row', { hasText: /^\s*echo\s*this session/ }).first().click();
        await page.keyboard.press('ArrowRight');
        const expanded = await waitForRows(
            (rows) => group(rows, 'Approved').some((row) => row.startsWith(shared)),
            "echo's approved directory",
            15000,
        );
        assert.ok(group(expanded, 'Approved').includes(`${shared} read-write, at /shared`), JSON.stringify(expanded));
        await page.mouse.move(1200, 700); // no hover highlight in the picture
        await page.waitForTimeout(300);
        await page.screenshot({ path: path.join(RESULTS_DIR, 'grants-view.png') });
        await page.screenshot({ path: path.join(SHOTS, '03-approved.png') });
    });
});
