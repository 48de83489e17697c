// The harness of the editor tests: the packaged .vsix installed into code-server (VS Code 1.100 in
// the browser), opened in headless Chromium through playwright-core, driven as a user would.
// No tests here: vsix.test.ts, grants.test.ts and chatPanel.test.ts use it.

import assert from 'node:assert/strict';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Browser, chromium, Page } from 'playwright-core';
import { CLIENT_DIR, RESULTS_DIR } from '../paths';

// test.sh installs code-server here (override: CODE_SERVER).
export const CODE_SERVER =
    process.env.CODE_SERVER ??
    path.join(
        process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'),
        'llama-agent-vscode',
        'code-server-4.100.3',
        'node_modules',
        '.bin',
        'code-server',
    );
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const VSIX = process.env.VSIX ?? path.join(CLIENT_DIR, 'llama-agent.vsix');

/** What every editor test turns off: no telemetry, updates, tips or trust prompts in the way. */
const BASE_USER_SETTINGS: Record<string, unknown> = {
    'telemetry.telemetryLevel': 'off',
    'update.mode': 'none',
    'extensions.autoUpdate': false,
    'extensions.autoCheckUpdates': false,
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    'workbench.enableExperiments': false,
    'security.workspace.trust.enabled': false,
    'git.openRepositoryInParentFolders': 'never',
};

export interface EditorOptions {
    /**
     * The editor's own directory (user data, extensions, XDG directories, workspace): each test
     * has its own, so that the tests can run at the same time. The test empties it if it wants
     * to, and may put files of its own there first (the editor starts on what it finds).
     */
    dataDir: string;
    /** The workspace's README.md: the folder is not empty, as a user's would not be. */
    readme: string;
    /** Where the numbered screenshots go; emptied first. */
    shotsDir: string;
    /** code-server's output, a file name in test-results/ (one per test: they may run at once). */
    logName: string;
    /** Added to the base user settings. */
    userSettings?: Record<string, unknown>;
    /**
     * Written to `<user-data-dir>/Machine/settings.json`, not to the user settings: code-server's
     * window is a remote one, and VS Code drops machine-scoped settings (the daemon's command, its
     * arguments, the tools directories) from the user settings there once the extension's schema
     * is known (a race at start-up); it takes them from the remote's Machine settings, where a
     * code-server user puts them too.
     */
    machineSettings: Record<string, unknown>;
    /** Added to the editor's environment, which the extension host and the daemon inherit. */
    env?: NodeJS.ProcessEnv;
    viewport?: { width: number; height: number };
}

export interface Editor {
    page: Page;
    /** code-server's address (http://127.0.0.1:<port>). */
    url: string;
    dataDir: string;
    workspace: string;
    extensionsDir: string;
    /** code-server's --user-data-dir: its logs/ holds the extension's output channels. */
    userData: string;
    /** A screenshot in the shots directory, numbered in the order taken; returns its file. */
    screenshot(name: string): Promise<string>;
    /** Runs a command from the palette (F1, its title, Enter), as a user would. */
    runCommand(title: string): Promise<void>;
    /** Closes the browser and ends code-server with everything it started (the daemon too). */
    stop(): Promise<void>;
}

/** A port nobody listens on, for code-server. */
export function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const probe = net.createServer();
        probe.once('error', reject);
        probe.listen(0, '127.0.0.1', () => {
            const { port } = probe.address() as net.AddressInfo;
            probe.close(() => resolve(port));
        });
    });
}

/** Waits until code-server answers its health check; `log` names its output in the error. */
export async function waitHealthy(url: string, timeoutMs: number, log = 'code-server.log'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        try {
            if ((await fetch(`${url}/healthz`)).ok) {
                return;
            }
        } catch {
            // not listening yet
        }
        if (Date.now() > deadline) {
            throw new Error(`code-server did not answer ${url}/healthz; see test-results/${log}`);
        }
        await new Promise((r) => setTimeout(r, 250));
    }
}

/** Takes a screenshot to `<dir>/<NN>-<name>.png`, NN counted by `counter`. */
export async function screenshot(page: Page, dir: string, name: string, counter: { shots: number }): Promise<string> {
    counter.shots += 1;
    const file = path.join(dir, `${String(counter.shots).padStart(2, '0')}-${name}.png`);
    await page.screenshot({ path: file });
    return file;
}

/**
 * Runs a command from the palette. Retried, every step: contributed commands take a moment to
 * register, and a webview or the panel may hold the focus (and F1) for a moment. `onMissing`
 * records the palette when the command never shows.
 */
export async function runCommand(page: Page, title: string, onMissing?: (name: string) => Promise<unknown>): Promise<void> {
    const deadline = Date.now() + 60000;
    for (let attempt = 1; ; attempt++) {
        try {
            await page.keyboard.press('Escape');
            await page.keyboard.press('F1');
            const input = page.locator('.quick-input-widget .quick-input-box input');
            await input.waitFor({ state: 'visible', timeout: 10000 });
            await input.fill(`>${title}`, { timeout: 5000 });
            const row = page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first();
            await row.waitFor({ state: 'visible', timeout: 3000 });
            await page.keyboard.press('Enter');
            return;
        } catch (error) {
            if (Date.now() > deadline) {
                await onMissing?.(`palette-missing-${title.replace(/\W+/g, '-')}`);
                throw new Error(`"${title}" never appeared in the command palette (${attempt} tries): ${String(error)}`);
            }
            await page.waitForTimeout(1000);
        }
    }
}

function findFile(dir: string, name: string): string | undefined {
    if (!fs.existsSync(dir)) {
        return undefined;
    }
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isFile() && entry.name === name) {
            return full;
        }
        if (entry.isDirectory()) {
            const found = findFile(full, name);
            if (found) {
                return found;
            }
        }
    }
    return undefined;
}

/**
 * Waits until the extension's "Llama Agent" log satisfies `check`; returns its text. The panel
 * renders only the channel's last lines; VS Code keeps the whole text in the session's log folder.
 */
export async function waitForExtensionLog(editor: Editor, check: (text: string) => boolean, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let text = '';
    while (Date.now() < deadline) {
        const file = findFile(path.join(editor.userData, 'logs'), 'Llama Agent.log');
        text = file ? fs.readFileSync(file, 'utf8') : '';
        if (check(text)) {
            return text;
        }
        await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`the "Llama Agent" log never showed what was expected; it has:\n${text}`);
}

/** Ends code-server, its extension host and the daemon it started: the whole process group. */
async function killGroup(server: ChildProcess): Promise<void> {
    if (server.pid === undefined || server.exitCode !== null) {
        return;
    }
    try {
        process.kill(-server.pid, 'SIGTERM');
    } catch {
        // already gone
    }
    await new Promise((r) => setTimeout(r, 1000));
    try {
        process.kill(-server.pid, 'SIGKILL');
    } catch {
        // already gone
    }
}

/**
 * Installs the .vsix into a code-server of the test's own, starts it, and opens its workspace in
 * headless Chromium; resolves once the workbench shows. What it started is stopped if it fails.
 */
export async function startEditor(options: EditorOptions): Promise<Editor> {
    assert.ok(fs.existsSync(VSIX), `${VSIX} is missing: run npm run package`);
    const dataDir = options.dataDir;
    const workspace = path.join(dataDir, 'workspace');
    const extensionsDir = path.join(dataDir, 'extensions');
    const userData = path.join(dataDir, 'user-data');
    fs.rmSync(options.shotsDir, { recursive: true, force: true });
    for (const dir of [workspace, extensionsDir, path.join(userData, 'User'), path.join(userData, 'Machine'), options.shotsDir, RESULTS_DIR]) {
        fs.mkdirSync(dir, { recursive: true });
    }
    fs.writeFileSync(path.join(workspace, 'README.md'), options.readme);
    const env: NodeJS.ProcessEnv = {
        ...process.env,
        // No marketplace: nothing but the .vsix under test is installed.
        EXTENSIONS_GALLERY: '{}',
        // code-server's (and Chromium's crash reports') files in the test's directory, not the user's.
        XDG_CONFIG_HOME: path.join(dataDir, 'xdg-config'),
        XDG_DATA_HOME: path.join(dataDir, 'xdg-data'),
        XDG_CACHE_HOME: path.join(dataDir, 'xdg-cache'),
        ...options.env,
    };

    const installed = execFileSync(
        CODE_SERVER,
        ['--extensions-dir', extensionsDir, '--user-data-dir', userData, '--install-extension', VSIX],
        { env, encoding: 'utf8', timeout: 120000 },
    );
    assert.match(installed, /successfully installed/, installed);

    const userSettings = { ...BASE_USER_SETTINGS, ...options.userSettings };
    fs.writeFileSync(path.join(userData, 'User', 'settings.json'), JSON.stringify(userSettings, null, 2));
    fs.writeFileSync(path.join(userData, 'Machine', 'settings.json'), JSON.stringify(options.machineSettings, null, 2));

    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const log = fs.openSync(path.join(RESULTS_DIR, options.logName), 'w');
    const server = spawn(
        CODE_SERVER,
        [
            '--bind-addr', `127.0.0.1:${port}`,
            '--auth', 'none',
            '--disable-telemetry',
            '--disable-update-check',
            '--disable-workspace-trust',
            '--user-data-dir', userData,
            '--extensions-dir', extensionsDir,
            workspace,
        ],
        // Its own process group, so that stop() ends the extension host and the daemon too.
        { env, stdio: ['ignore', log, log], detached: true },
    );
    fs.closeSync(log); // the child has its own copy

    let browser: Browser | undefined;
    const stop = async () => {
        await browser?.close().catch(() => undefined);
        await killGroup(server);
    };
    try {
        await waitHealthy(url, 60000, options.logName);
        browser = await chromium.launch({
            executablePath: CHROMIUM,
            headless: true,
            env, // its crash reports go to the test's XDG_CONFIG_HOME, not the user's
            args: [
                '--no-sandbox',
                '--disable-gpu',
                '--disable-dev-shm-usage',
                '--disable-background-networking',
                '--disable-component-update',
                '--disable-sync',
                '--no-first-run',
            ],
        });
        const page = await browser.newPage({ viewport: options.viewport ?? { width: 1440, height: 900 } });
        await page.goto(`${url}/?folder=${encodeURIComponent(workspace)}`);
        await page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: 60000 });
        await page.locator('.monaco-workbench .part.activitybar').waitFor({ state: 'visible', timeout: 30000 });

        const counter = { shots: 0 };
        const shoot = (name: string) => screenshot(page, options.shotsDir, name, counter);
        return {
            page,
            url,
            dataDir,
            workspace,
            extensionsDir,
            userData,
            screenshot: shoot,
            runCommand: (title) => runCommand(page, title, shoot),
            stop,
        };
    } catch (error) {
        await stop();
        throw error;
    }
}
