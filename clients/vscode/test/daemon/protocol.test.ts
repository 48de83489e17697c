// The extension's protocol layer (src/protocol.ts) against the real daemon over stdio,
// through a bare vscode-jsonrpc connection instead of VS Code's LanguageClient.

import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
    CancellationTokenSource,
    createMessageConnection,
    MessageConnection,
    ResponseError,
    StreamMessageReader,
    StreamMessageWriter,
} from 'vscode-jsonrpc/node';
import { RunFormatter } from '../../src/progress';
import {
    ErrorCodes,
    invokeTool,
    isCancelled,
    listTools,
    onToolsDidChange,
    resultText,
    runAgent,
    RunProgressValue,
    ToolsDidChangeParams,
} from '../../src/protocol';
import { CACHE_DIR, DAEMON, PROMPT, RESULTS_DIR, TEXT, TOOLS_DIR } from '../paths';
import { waitFor } from '../wait';

let daemon: ChildProcess;
let connection: MessageConnection;
let extraToolsDir: string;
const changes: ToolsDidChangeParams[] = [];
let stderrLog: fs.WriteStream;

async function expectResponseError(promise: Promise<unknown>, code: number): Promise<ResponseError<unknown>> {
    try {
        await promise;
    } catch (error) {
        assert.ok(error instanceof ResponseError, `expected a ResponseError, got ${String(error)}`);
        assert.equal(error.code, code, error.message);
        return error;
    }
    assert.fail(`expected error ${code}, got a result`);
}

describe('llama-agent serve over stdio', () => {
    before(async () => {
        assert.ok(fs.existsSync(DAEMON), `${DAEMON} is missing: run make setup components in the repository`);
        fs.mkdirSync(RESULTS_DIR, { recursive: true });
        extraToolsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-agent-vscode-tools-'));
        stderrLog = fs.createWriteStream(path.join(RESULTS_DIR, 'protocol-daemon.log'));
        daemon = spawn(
            DAEMON,
            ['serve', '--tools-dir', TOOLS_DIR, '--tools-dir', extraToolsDir, '--lazy-model', '--cache-dir', CACHE_DIR],
            { stdio: ['pipe', 'pipe', 'pipe'] },
        );
        daemon.stderr!.pipe(stderrLog);
        connection = createMessageConnection(new StreamMessageReader(daemon.stdout!), new StreamMessageWriter(daemon.stdin!));
        onToolsDidChange(connection, (change) => changes.push(change));
        connection.listen();
    });

    after(async () => {
        if (daemon.exitCode === null) {
            daemon.kill('SIGKILL');
        }
        connection?.dispose();
        fs.rmSync(extraToolsDir, { recursive: true, force: true });
        stderrLog?.end();
    });

    test('initialize advertises the custom methods under capabilities.experimental.llamaAgent', async () => {
        const result = await connection.sendRequest<{ capabilities: { experimental?: any }; serverInfo?: { name: string } }>(
            'initialize',
            { processId: process.pid, rootUri: null, capabilities: {} },
        );
        assert.equal(result.serverInfo?.name, 'llama-agent');
        const custom = result.capabilities.experimental?.llamaAgent;
        assert.deepEqual([...custom.methods].sort(), [
            'agent/forget',
            'agent/history',
            'agent/newSession',
            'agent/run',
            'grants/answer',
            'grants/list',
            'grants/revoke',
            'tools/invoke',
            'tools/list',
        ]);
        assert.deepEqual(custom.notifications, ['tools/didChange', 'grants/didChange']);
        // The embedded model, in the daemon's process (no --model given).
        assert.deepEqual(custom.model, { backend: 'llama', name: null, baseUrl: null });
        await connection.sendNotification('initialized', {});
    });

    test('tools/list has echo and print, with schemas, versions and grants', async () => {
        const { tools, failed } = await listTools(connection);
        const names = tools.map((t) => t.name);
        assert.ok(names.includes('echo') && names.includes('print'), `tools: ${names.join(', ')}`);
        const echo = tools.find((t) => t.name === 'echo')!;
        assert.equal(echo.version, '1.0.0');
        assert.equal(echo.inputSchema.properties?.value?.type, 'string');
        assert.deepEqual(echo.inputSchema.required, ['value']);
        assert.equal(echo.grants?.network, false);
        assert.equal(typeof echo.grants?.timeoutSeconds, 'number');
        assert.deepEqual(failed, []);
    });

    test('tools/invoke echo returns the whole string', async () => {
        const result = await invokeTool(connection, 'echo', { value: TEXT });
        assert.equal(result.isError, false);
        assert.equal(resultText(result), TEXT);
        assert.deepEqual(result.tool, { name: 'echo', version: '1.0.0' });
    });

    test('bad arguments and unknown tools give -32602', async () => {
        const missing = await expectResponseError(invokeTool(connection, 'echo', {}), ErrorCodes.InvalidParams);
        assert.match(missing.message, /value/);
        const wrongType = await expectResponseError(invokeTool(connection, 'echo', { value: 42 }), ErrorCodes.InvalidParams);
        assert.equal((wrongType.data as { field?: string }).field, 'value');
        const unknown = await expectResponseError(invokeTool(connection, 'no-such-tool', {}), ErrorCodes.InvalidParams);
        assert.match(unknown.message, /no-such-tool/);
    });

    test('a broken tool file is announced by tools/didChange and listed under failed', { timeout: 90000 }, async () => {
        const staged = path.join(extraToolsDir, '.junk.tmp');
        fs.writeFileSync(staged, 'this is not WebAssembly');
        fs.renameSync(staged, path.join(extraToolsDir, 'junk.wasm'));
        const change = await waitFor(
            () => changes.find((c) => c.failed.some((f) => f.path.endsWith('junk.wasm'))),
            'tools/didChange naming junk.wasm',
            // The daemon's watcher runs at idle CPU priority: generous on a busy machine.
            60000,
        );
        assert.deepEqual(change.added, []);
        const { tools, failed } = await listTools(connection);
        assert.ok(tools.some((t) => t.name === 'echo'), 'echo still loaded');
        const junk = failed.find((f) => f.path.endsWith('junk.wasm'));
        assert.ok(junk, `failed: ${JSON.stringify(failed)}`);
        assert.ok(junk.error.length > 0);
    });

    // The model's wording differs between CPUs: these tests force the first call (toolChoice) and
    // assert only what the daemon guarantees; what the model chooses to say is for `make eval`.
    test('agent/run passes the whole string to the tool, streaming $/progress on its workDoneToken', { timeout: 300000 }, async () => {
        const values: RunProgressValue[] = [];
        const result = await runAgent(
            connection,
            { prompt: PROMPT, maxSteps: 3, toolChoice: 'echo', maxTokens: 1024 },
            (value) => values.push(value),
        );
        if (result.steps.length === 0) {
            // A model that never closes the string is cut at maxTokens, and the cut call is not run.
            assert.equal(result.stopReason, 'maxTokens');
            return;
        }
        const first = result.steps[0];
        assert.equal(first?.tool, 'echo');
        assert.equal(typeof first.arguments.value, 'string');
        assert.equal(first.result, first.arguments.value);
        assert.equal(first.isError, false);
        assert.ok(['answer', 'maxSteps', 'maxTokens'].includes(result.stopReason), result.stopReason);
        assert.ok(result.usage.promptTokens > 0 && result.usage.completionTokens > 0);
        assert.equal(result.model?.backend, 'llama');
        assert.match(result.model?.name ?? '', /\.gguf$/);

        assert.equal(values[0]?.kind, 'begin');
        assert.equal(values[values.length - 1]?.kind, 'end');
        const events = values.flatMap((v) => (v.kind === 'report' && v.llamaAgent ? [v.llamaAgent] : []));
        assert.ok(events.some((e) => e.event === 'text'), 'streamed text');
        const call = events.find((e) => e.event === 'toolCall');
        assert.deepEqual(call, { event: 'toolCall', step: 0, tool: 'echo', arguments: first.arguments });
        const toolResult = events.find((e) => e.event === 'toolResult');
        assert.deepEqual(toolResult, { event: 'toolResult', step: 0, tool: 'echo', result: first.result, isError: false });

        // What the Runs channel shows for this run.
        const formatter = new RunFormatter();
        const shown = values.map((v) => formatter.format(v)).join('') + formatter.formatResult(result);
        assert.ok(shown.startsWith(`▶ ${PROMPT}\n`), shown);
        assert.ok(shown.includes(`\n→ echo ${JSON.stringify(first.arguments)}\n← ${first.result}\n`), shown);
        assert.ok(shown.includes(`Answer: ${result.answer}\n`), shown);
    });

    test('cancelling the request sends $/cancelRequest: -32800, and the model serves the next run', { timeout: 300000 }, async () => {
        const source = new CancellationTokenSource();
        const values: RunProgressValue[] = [];
        const long = 'the quick brown fox jumps over the lazy dog '.repeat(6).trim();
        // A forced call cannot end before its JSON does: the first report comes well before the end.
        const run = runAgent(
            connection,
            { prompt: `Please echo back '${long}'`, tools: ['echo'], maxSteps: 3, toolChoice: 'echo' },
            (value) => {
                values.push(value);
                if (value.kind === 'report') {
                    source.cancel();
                }
            },
            source.token,
        );
        try {
            await run;
            assert.fail('the run finished although it was cancelled');
        } catch (error) {
            assert.ok(isCancelled(error), `expected -32800, got ${String(error)}`);
        }
        assert.ok(values.some((v) => v.kind === 'report'));
        const again = await runAgent(connection, { prompt: PROMPT, tools: ['echo'], maxSteps: 3 }, () => undefined);
        assert.ok(['answer', 'maxSteps', 'maxTokens'].includes(again.stopReason), again.stopReason);
        assert.ok(again.steps.every((step) => step.tool === 'echo' && !step.isError && step.result === step.arguments.value));
    });

    test('shutdown and exit end the daemon with code 0', { timeout: 30000 }, async () => {
        const exited = new Promise<number | null>((resolve) => daemon.once('exit', (code) => resolve(code)));
        await connection.sendRequest('shutdown');
        await connection.sendNotification('exit');
        assert.equal(await exited, 0);
    });
});
