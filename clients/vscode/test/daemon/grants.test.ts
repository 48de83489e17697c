// The Grants view's protocol (src/grants.ts) against the real daemon over stdio: a tool whose
// policy asks for a directory, a variable and a longer timeout, listed, denied, allowed once,
// revoked, always allowed (into a private grants file) and revoked again, with grants/didChange
// after each change; and no window/showMessageRequest about it, since the client said it shows
// them itself (initializationOptions.grantsView).

import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createMessageConnection, MessageConnection, ResponseError, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import {
    answerGrantRequest,
    GRANTS_VIEW_OPTIONS,
    GrantsListResult,
    listGrants,
    onGrantsDidChange,
    revokeGrants,
} from '../../src/grants';
import { ErrorCodes, invokeTool, onToolsDidChange, resultText } from '../../src/protocol';
import { CACHE_DIR, DAEMON, RESULTS_DIR, TOOLS_DIR } from '../paths';
import { waitFor } from '../wait';

let daemon: ChildProcess;
let connection: MessageConnection;
let root: string;
let dataDir: string;
let configDir: string;
let stderrLog: fs.WriteStream;
let grantsChanges = 0;
let toolsChanges = 0;
/** The questions about grants the daemon put to this client: none, with a Grants view. */
const asked: unknown[] = [];

/** Runs `change`, then waits for the grants/didChange it causes. */
async function expectGrantsDidChange<T>(change: () => Promise<T>): Promise<T> {
    const before = grantsChanges;
    const result = await change();
    await waitFor(() => (grantsChanges > before ? true : undefined), 'grants/didChange', 30000);
    return result;
}

describe('grants/* over stdio', () => {
    before(async () => {
        assert.ok(fs.existsSync(DAEMON), `${DAEMON} is missing: run make setup components in the repository`);
        fs.mkdirSync(RESULTS_DIR, { recursive: true });
        root = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-agent-vscode-grants-'));
        const toolsDir = path.join(root, 'tools');
        dataDir = path.join(root, 'data');
        configDir = path.join(root, 'config');
        for (const dir of [toolsDir, dataDir, configDir]) {
            fs.mkdirSync(dir, { mode: 0o700 });
        }
        fs.copyFileSync(path.join(TOOLS_DIR, 'echo.wasm'), path.join(toolsDir, 'echo.wasm'));
        fs.writeFileSync(
            path.join(toolsDir, 'echo.policy.toml'),
            `env = ["LANG"]\ntimeout_seconds = 20\n\n[[dirs]]\nhost = ${JSON.stringify(dataDir)}\nguest = "/data"\nmode = "rw"\n`,
        );
        stderrLog = fs.createWriteStream(path.join(RESULTS_DIR, 'grants-daemon.log'));
        daemon = spawn(DAEMON, ['serve', '--tools-dir', toolsDir, '--lazy-model', '--cache-dir', CACHE_DIR], {
            stdio: ['pipe', 'pipe', 'pipe'],
            // "Always allow" writes the grants file here, not into the person's own.
            env: { ...process.env, LLAMA_AGENT_CONFIG_DIR: configDir },
        });
        daemon.stderr!.pipe(stderrLog);
        connection = createMessageConnection(new StreamMessageReader(daemon.stdout!), new StreamMessageWriter(daemon.stdin!));
        onGrantsDidChange(connection, () => (grantsChanges += 1));
        onToolsDidChange(connection, () => (toolsChanges += 1));
        connection.onRequest('window/showMessageRequest', (params: { actions?: { title: string }[] }) => {
            const titles = (params.actions ?? []).map((action) => action.title);
            if (titles.includes('Deny')) {
                asked.push(params); // a question about grants ("Allow once", "Always allow", "Deny")
                return null;
            }
            // A question about one call that may write (the tool has a read-write directory): allowed.
            return titles.includes('Allow once') ? { title: 'Allow once' } : null;
        });
        connection.listen();
        const result = await connection.sendRequest<{ capabilities: { experimental?: any } }>('initialize', {
            processId: process.pid,
            rootUri: null,
            capabilities: { window: { showMessage: { messageActionItem: { additionalPropertiesSupport: false } } } },
            initializationOptions: GRANTS_VIEW_OPTIONS,
        });
        const custom = result.capabilities.experimental?.llamaAgent;
        assert.ok(custom.methods.includes('grants/list') && custom.methods.includes('grants/answer'), JSON.stringify(custom));
        assert.ok(custom.notifications.includes('grants/didChange'), JSON.stringify(custom));
        await connection.sendNotification('initialized', {});
    });

    after(async () => {
        if (daemon.exitCode === null) {
            const exited = new Promise((resolve) => daemon.once('exit', resolve));
            await connection.sendRequest('shutdown').catch(() => undefined);
            await connection.sendNotification('exit').catch(() => undefined);
            await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
            if (daemon.exitCode === null) {
                daemon.kill('SIGKILL');
            }
        }
        connection?.dispose();
        stderrLog?.end();
        fs.rmSync(root, { recursive: true, force: true });
    });

    let listing: GrantsListResult;
    let id: string;

    test('grants/list: the request waits, exactly as the policy asks, and nobody was asked about it', async () => {
        listing = await listGrants(connection);
        assert.equal(listing.pending.length, 1, JSON.stringify(listing));
        const request = listing.pending[0];
        id = request.id;
        assert.equal(request.tool, 'echo');
        assert.deepEqual(request.dirs, [{ path: fs.realpathSync(dataDir), mode: 'rw', guest: '/data' }]);
        assert.deepEqual(request.env, ['LANG']);
        assert.deepEqual(request.limits, { timeoutSeconds: 20 });
        assert.equal(request.workspace, null);
        assert.equal(request.denied, false);
        assert.match(request.message, /echo/);
        assert.deepEqual(listing.approved, []);
        // Give a question time to arrive, were the daemon to ask one: it must not.
        await new Promise((r) => setTimeout(r, 1000));
        assert.deepEqual(asked, []);
    });

    test('Deny: not approved, still listed (denied); grants/didChange', async () => {
        const changed = await expectGrantsDidChange(() => answerGrantRequest(connection, id, 'Deny'));
        assert.equal(changed, false);
        const after = await listGrants(connection);
        assert.equal(after.pending[0]?.denied, true);
        assert.deepEqual(after.approved, []);
    });

    test('Allow once: the request moves to approved for this session, and the tool gets its grants', async () => {
        const tools = toolsChanges;
        const changed = await expectGrantsDidChange(() => answerGrantRequest(connection, id, 'Allow once'));
        assert.equal(changed, true);
        const after = await listGrants(connection);
        assert.deepEqual(after.pending, []);
        assert.deepEqual(after.approved, [
            {
                tool: 'echo',
                scope: 'this session',
                dirs: listing.pending[0].dirs,
                env: ['LANG'],
                limits: { timeoutSeconds: 20 },
                workspace: null,
            },
        ]);
        await waitFor(() => (toolsChanges > tools ? true : undefined), 'tools/didChange after the approval', 30000);
        const echoed = await invokeTool(connection, 'echo', { value: 'still echoes' });
        assert.equal(resultText(echoed), 'still echoes');
    });

    test('Revoke: back to pending; Always allow: into the grants file; Revoke: out of it', async () => {
        assert.equal(await expectGrantsDidChange(() => revokeGrants(connection, 'echo')), true);
        const revoked = await listGrants(connection);
        assert.deepEqual(revoked.approved, []);
        assert.equal(revoked.pending[0]?.tool, 'echo');

        assert.equal(await expectGrantsDidChange(() => answerGrantRequest(connection, revoked.pending[0].id, 'Always allow')), true);
        const always = await listGrants(connection);
        assert.deepEqual(always.approved.map((a) => [a.tool, a.scope]), [['echo', 'grants file']]);
        const grantsFile = fs.readFileSync(path.join(configDir, 'grants.toml'), 'utf8');
        assert.match(grantsFile, /echo/);

        assert.equal(await expectGrantsDidChange(() => revokeGrants(connection, 'echo')), true);
        assert.equal((await listGrants(connection)).pending[0]?.tool, 'echo');
        assert.doesNotMatch(fs.readFileSync(path.join(configDir, 'grants.toml'), 'utf8'), /echo/);
        assert.equal(await revokeGrants(connection, 'echo'), false);
        assert.deepEqual(asked, []);
    });

    test('an unknown request id or a bad action: -32602', async () => {
        for (const params of [
            { id: 'no-such-request', action: 'Allow once' },
            { id, action: 'Allow forever' },
        ]) {
            try {
                await connection.sendRequest('grants/answer', params);
                assert.fail(`expected -32602 for ${JSON.stringify(params)}`);
            } catch (error) {
                assert.ok(error instanceof ResponseError, String(error));
                assert.equal(error.code, ErrorCodes.InvalidParams, error.message);
            }
        }
    });
});
