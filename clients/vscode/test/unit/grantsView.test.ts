import * as fs from 'node:fs';
import * as path from 'node:path';
import { ThemeIcon, TreeItemCollapsibleState, window } from 'vscode';
import {
    answerGrantRequest,
    describeGrants,
    GrantsAnswerRequest,
    GrantsListRequest,
    GrantsListResult,
    GrantsRevokeRequest,
    MalformedAnswer,
    parseGrantsList,
    revokeGrants,
    summarizeGrants,
    visible,
} from '../../src/grants';
import {
    answerCommand,
    APPROVAL_CONTEXT,
    detailNodes,
    grantsCommandHandlers,
    GrantsCommands,
    GrantsNode,
    grantsTreeItem,
    GrantsTreeProvider,
    LOADING,
    REQUEST_CONTEXT,
    revokeCommand,
    TRUSTED_APPROVAL_CONTEXT,
} from '../../src/grantsView';
import type { AgentConnection } from '../../src/protocol';

/** What grants/list answers on the wire, as the daemon sends it. */
const WIRE = {
    pending: [
        {
            id: 'req-1',
            tool: 'indexer',
            dirs: [
                { path: '/home/me/data', mode: 'rw', guest: '/data' },
                { path: '/srv/ref', mode: 'ro', guest: '/ref' },
            ],
            env: ['HOME', 'LANG'],
            limits: { timeoutSeconds: 30, memoryBytes: 1024 * 1024 * 1024 },
            workspace: 'ro',
            message: "llama-agent: the tool indexer ('/t/indexer.wasm') asks for read-write access to '/home/me/data'…",
            denied: false,
        },
        {
            id: 'req-2',
            tool: 'fetcher',
            dirs: [],
            env: [],
            limits: { outputBytes: 4 * 1024 * 1024 },
            workspace: null,
            message: 'fetcher asks for more output',
            denied: true,
        },
    ],
    approved: [
        { tool: 'notes', scope: 'grants file', dirs: [{ path: '/home/me/notes', mode: 'rw' }], env: [], limits: {}, workspace: null },
        { tool: 'read_file', scope: 'trusted directory', dirs: [], env: [], limits: {}, workspace: 'ro' },
    ],
};

const LISTING: GrantsListResult = parseGrantsList(WIRE);

function fakeConnection(answer: (method: string, params: unknown) => unknown) {
    const sendRequest = jest.fn(async (type: { method: string }, params: unknown) => answer(type.method, params));
    return { connection: { sendRequest } as unknown as AgentConnection, sendRequest };
}

function icon(node: GrantsNode): string {
    return (grantsTreeItem(node).iconPath as ThemeIcon).id;
}

/** The tree as lines, children indented: "label — description". */
function render(tree: GrantsTreeProvider, node?: GrantsNode, depth = 0): string[] {
    return tree.getChildren(node).flatMap((child) => {
        const item = tree.getTreeItem(child);
        const line = `${'  '.repeat(depth)}${String(item.label)}${item.description ? ` — ${String(item.description)}` : ''}`;
        return [line, ...render(tree, child, depth + 1)];
    });
}

describe('grants/list answers are checked', () => {
    test('a well-formed answer is read as it is, optional fields filled', () => {
        expect(LISTING.pending[0]).toEqual({ ...WIRE.pending[0] });
        expect(LISTING.approved[0].dirs).toEqual([{ path: '/home/me/notes', mode: 'rw' }]);
        const older = parseGrantsList({ pending: [{ ...WIRE.pending[0], denied: undefined, message: undefined }], approved: [] });
        expect(older.pending[0].denied).toBe(false);
        expect(older.pending[0].message).toBe('');
    });

    test.each([
        [null, 'the result is not an object'],
        [{ pending: [] }, 'approved is not an array'],
        [{ ...WIRE, pending: [{ ...WIRE.pending[0], id: 7 }] }, 'pending[0].id is not a string'],
        [{ ...WIRE, pending: [{ ...WIRE.pending[0], dirs: [{ path: '/x', mode: 'all' }] }] }, 'pending[0].dirs[0].mode is not "ro" or "rw"'],
        [{ ...WIRE, pending: [{ ...WIRE.pending[0], env: ['A', 1] }] }, 'pending[0].env[1] is not a string'],
        [{ ...WIRE, pending: [{ ...WIRE.pending[0], limits: { memoryBytes: [1] } }] }, 'pending[0].limits.memoryBytes is not a number'],
        [{ ...WIRE, pending: [{ ...WIRE.pending[0], workspace: 'yes' }] }, 'pending[0].workspace is not "ro" or "rw"'],
        [{ ...WIRE, approved: [{ ...WIRE.approved[0], scope: 'forever' }] }, 'approved[0].scope is not one of'],
    ])('a malformed answer is an error naming the field: %j', (answer, problem) => {
        expect(() => parseGrantsList(answer)).toThrow(MalformedAnswer);
        expect(() => parseGrantsList(answer)).toThrow(problem);
    });

    test('grants/answer and grants/revoke send their params and read their flag', async () => {
        const { connection, sendRequest } = fakeConnection((method) => (method === 'grants/answer' ? { changed: true } : { revoked: false }));
        await expect(answerGrantRequest(connection, 'req-1', 'Always allow')).resolves.toBe(true);
        expect(sendRequest).toHaveBeenCalledWith(GrantsAnswerRequest, { id: 'req-1', action: 'Always allow' });
        await expect(revokeGrants(connection, 'notes')).resolves.toBe(false);
        expect(sendRequest).toHaveBeenCalledWith(GrantsRevokeRequest, { tool: 'notes' });
        const odd = fakeConnection(() => ({ changed: 'yes' })).connection;
        await expect(answerGrantRequest(odd, 'req-1', 'Deny')).rejects.toThrow('the result has no boolean "changed"');
    });
});

describe('what a request asks, in words', () => {
    test('each directory with its mode, the workspace, the variables, the limits above the defaults', () => {
        expect(describeGrants(LISTING.pending[0])).toEqual([
            'read-write: /home/me/data (at /data)',
            'read-only: /srv/ref (at /ref)',
            'read-only: the workspace (at /workspace)',
            'environment variables: HOME, LANG',
            'time per call: 30 s',
            'memory: 1 GiB',
        ]);
        expect(summarizeGrants(LISTING.pending[0])).toBe('2 directories (rw/ro), workspace (ro), 2 variables, 2 limits');
        expect(summarizeGrants(LISTING.pending[1])).toBe('1 limit');
    });

    test('the workspace, once the daemon lists it among the dirs, is named once, as the workspace', () => {
        const grants = { dirs: [{ path: '/home/me/project', mode: 'rw' as const, guest: '/workspace' }], env: [], limits: {}, workspace: 'rw' as const };
        expect(describeGrants(grants)).toEqual(['read-write: the workspace /home/me/project (at /workspace)']);
        expect(summarizeGrants(grants)).toBe('workspace (rw)');
        const [node] = detailNodes(grants);
        const item = grantsTreeItem(node);
        expect([item.label, item.description, icon(node)]).toEqual(['/home/me/project', 'read-write, the workspace', 'root-folder']);
    });

    test('invisible and control characters in paths and names are shown as escapes', () => {
        expect(visible('data\n(read-only)')).toBe('data\\n(read-only)');
        expect(visible('evil\u202etxt.exe')).toBe('evil\\u202etxt.exe');
        expect(visible('\u001b[2Kx\u200b')).toBe('\\x1b[2Kx\\u200b');
        expect(visible('/home/me/données')).toBe('/home/me/données');
        const grants = { dirs: [{ path: '/tmp/a\nread-only: /etc', mode: 'rw' as const }], env: ['X\rY'], limits: { 'odd\tname': 'v' }, workspace: null };
        expect(describeGrants(grants)).toEqual(['read-write: /tmp/a\\nread-only: /etc', 'environment variables: X\\rY', 'odd\\tname: v']);
    });
});

describe('tree items', () => {
    test('a pending request: the tool, a summary, its Allow/Deny context, and everything asked in a plain tooltip', () => {
        const item = grantsTreeItem({ kind: 'request', request: LISTING.pending[0] });
        expect(item.label).toBe('indexer');
        expect(item.description).toBe('2 directories (rw/ro), workspace (ro), 2 variables, 2 limits');
        expect(item.contextValue).toBe(REQUEST_CONTEXT);
        expect(item.collapsibleState).toBe(TreeItemCollapsibleState.Expanded);
        expect(typeof item.tooltip).toBe('string'); // never markdown: paths are shown as they are
        expect(item.tooltip).toContain('• read-write: /home/me/data (at /data)');
        expect(item.tooltip).toContain('• memory: 1 GiB');
        expect(item.tooltip).toContain(WIRE.pending[0].message);
        expect(icon({ kind: 'request', request: LISTING.pending[0] })).toBe('shield');
    });

    test('a denied request says so, and can still be allowed', () => {
        const item = grantsTreeItem({ kind: 'request', request: LISTING.pending[1] });
        expect(item.description).toBe('denied · 1 limit');
        expect(item.contextValue).toBe(REQUEST_CONTEXT);
        expect(item.tooltip).toContain('Denied in this daemon process');
    });

    test('an approval shows its scope; one by a trusted directory cannot be revoked here, and says why', () => {
        const fromFile = grantsTreeItem({ kind: 'approval', approval: LISTING.approved[0] });
        expect([fromFile.label, fromFile.description, fromFile.contextValue]).toEqual(['notes', 'grants file', APPROVAL_CONTEXT]);
        const trusted = grantsTreeItem({ kind: 'approval', approval: LISTING.approved[1] });
        expect([trusted.label, trusted.description, trusted.contextValue]).toEqual(['read_file', 'trusted directory', TRUSTED_APPROVAL_CONTEXT]);
        expect(trusted.tooltip).toContain('cannot be revoked here');
        expect(trusted.tooltip).toContain('• read-only: the workspace (at /workspace)');
    });
});

describe('GrantsTreeProvider', () => {
    test('refresh shows both groups, each request with what it asks, and the badge counts those waiting', async () => {
        const list = jest.fn(async () => LISTING);
        const tree = new GrantsTreeProvider(() => ({}) as AgentConnection, list);
        const changed = jest.fn();
        tree.onDidChangeTreeData(changed);
        const refreshing = tree.refresh();
        expect(tree.getChildren()).toEqual([LOADING]);
        await refreshing;
        expect(changed).toHaveBeenCalledTimes(2);
        expect(render(tree)).toEqual([
            'Waiting for you — 2',
            '  indexer — 2 directories (rw/ro), workspace (ro), 2 variables, 2 limits',
            '    /home/me/data — read-write, at /data',
            '    /srv/ref — read-only, at /ref',
            '    the workspace — read-only',
            '    HOME — environment variable',
            '    LANG — environment variable',
            '    time per call — 30 s',
            '    memory — 1 GiB',
            '  fetcher — denied · 1 limit',
            '    output per stream — 4 MiB',
            'Approved — 2',
            '  notes — grants file',
            '    /home/me/notes — read-write',
            '  read_file — trusted directory',
            '    the workspace — read-only',
        ]);
        // fetcher was denied: it no longer waits for an answer.
        expect(tree.badge()).toEqual({ value: 1, tooltip: '1 tool asks for grants' });
    });

    test('nothing pending: a message in the group and no badge', async () => {
        const tree = new GrantsTreeProvider(() => ({}) as AgentConnection, async () => ({ pending: [], approved: [] }));
        await tree.refresh();
        expect(render(tree)).toEqual([
            'Waiting for you — 0',
            '  No tool is waiting for grants',
            'Approved — 0',
            '  No tool has grants beyond the defaults',
        ]);
        expect(tree.badge()).toBeUndefined();
    });

    test('no daemon: no nodes (the welcome shows); errors are shown readably in the view', async () => {
        const list = jest.fn();
        const stopped = new GrantsTreeProvider(() => undefined, list);
        await stopped.refresh();
        expect(stopped.getChildren()).toEqual([]);
        expect(list).not.toHaveBeenCalled();

        const malformed = new GrantsTreeProvider(() => ({}) as AgentConnection, async () => parseGrantsList({ pending: 3, approved: [] }));
        await malformed.refresh();
        expect(render(malformed)).toEqual([
            "grants/list failed: the daemon's answer to grants/list is not understood: pending is not an array",
        ]);
        expect(icon(malformed.getChildren()[0])).toBe('error');
        expect(malformed.badge()).toBeUndefined();

        const older = new GrantsTreeProvider(() => ({}) as AgentConnection, async () => {
            throw Object.assign(new Error('Unhandled method grants/list'), { code: -32601 });
        });
        await older.refresh();
        const [node] = older.getChildren();
        expect(older.getTreeItem(node).label).toBe('This llama-agent has no grants/list: update it');
        expect(older.getTreeItem(node).tooltip).toContain('llama-agent tools grant NAME');
    });

    test('the real grants/list request goes through the connection and is checked', async () => {
        const { connection, sendRequest } = fakeConnection(() => WIRE);
        const tree = new GrantsTreeProvider(() => connection);
        await tree.refresh();
        expect(sendRequest).toHaveBeenCalledWith(GrantsListRequest, {}, undefined);
        expect(tree.pendingCount).toBe(1);
    });

    test('a slow refresh overtaken by a newer one is dropped', async () => {
        let release: () => void = () => undefined;
        const slow = new Promise<void>((resolve) => (release = resolve));
        let calls = 0;
        const tree = new GrantsTreeProvider(
            () => ({}) as AgentConnection,
            async () => {
                calls += 1;
                if (calls === 1) {
                    await slow;
                    return LISTING;
                }
                return { pending: [], approved: [] };
            },
        );
        const first = tree.refresh();
        await tree.refresh();
        release();
        await first;
        expect(tree.badge()).toBeUndefined();
        expect(render(tree)[0]).toBe('Waiting for you — 0');
    });
});

describe('the actions', () => {
    const request: GrantsNode = { kind: 'request', request: LISTING.pending[0] };

    function context(answer: (method: string, params: unknown) => unknown) {
        const { connection, sendRequest } = fakeConnection(answer);
        const refresh = jest.fn(async () => undefined);
        return { ctx: { connect: jest.fn(async () => connection), refresh }, sendRequest, refresh };
    }

    test.each([
        [GrantsCommands.allowOnce, 'Allow once'],
        [GrantsCommands.allowAlways, 'Always allow'],
        [GrantsCommands.deny, 'Deny'],
    ])('%s answers the request with "%s", then lists the grants again', async (command, action) => {
        // The daemon: changed = approved now; a denied request stays pending.
        const approves = action !== 'Deny';
        const { ctx, sendRequest, refresh } = context(() => ({ changed: approves }));
        await expect(grantsCommandHandlers(ctx)[command](request)).resolves.toBe(approves);
        expect(sendRequest).toHaveBeenCalledWith(GrantsAnswerRequest, { id: 'req-1', action });
        expect(refresh).toHaveBeenCalled();
        expect(window.showErrorMessage).not.toHaveBeenCalled();
        expect(window.showInformationMessage).not.toHaveBeenCalled();
    });

    test('an Allow that approved nothing says so', async () => {
        const { ctx } = context(() => ({ changed: false }));
        await answerCommand(ctx, request, 'Allow once');
        expect(window.showInformationMessage).toHaveBeenCalledWith("Llama Agent: indexer's request was answered already, or no longer waits.");
    });

    test('a failing answer is shown readably, and the view refreshed', async () => {
        const { ctx, refresh } = context(() => {
            throw new Error('cannot write /home/me/.config/llama-agent/grants.toml');
        });
        await expect(answerCommand(ctx, request, 'Always allow')).resolves.toBeUndefined();
        expect(window.showErrorMessage).toHaveBeenCalledWith(
            'Llama Agent: "Always allow" for indexer failed: cannot write /home/me/.config/llama-agent/grants.toml',
        );
        expect(refresh).toHaveBeenCalled();
        const older = context(() => {
            throw Object.assign(new Error('Unhandled method grants/answer'), { code: -32601 });
        });
        await answerCommand(older.ctx, request, 'Deny');
        expect(window.showErrorMessage).toHaveBeenLastCalledWith(expect.stringContaining('this llama-agent has no grants/answer; update it'));
    });

    test('the actions ignore anything but their own items (from the palette, another view)', async () => {
        const { ctx, sendRequest } = context(() => ({ changed: true }));
        await expect(answerCommand(ctx, undefined, 'Allow once')).resolves.toBeUndefined();
        await expect(answerCommand(ctx, { kind: 'approval', approval: LISTING.approved[0] }, 'Allow once')).resolves.toBeUndefined();
        await expect(revokeCommand(ctx, request)).resolves.toBeUndefined();
        expect(sendRequest).not.toHaveBeenCalled();
    });

    test('Revoke sends the tool name; a trusted directory is not revoked and the person is told why', async () => {
        const { ctx, sendRequest, refresh } = context(() => ({ revoked: true }));
        await expect(revokeCommand(ctx, { kind: 'approval', approval: LISTING.approved[0] })).resolves.toBe(true);
        expect(sendRequest).toHaveBeenCalledWith(GrantsRevokeRequest, { tool: 'notes' });
        expect(refresh).toHaveBeenCalled();
        sendRequest.mockClear();
        await expect(revokeCommand(ctx, { kind: 'approval', approval: LISTING.approved[1] })).resolves.toBeUndefined();
        expect(sendRequest).not.toHaveBeenCalled();
        expect(window.showInformationMessage).toHaveBeenCalledWith(expect.stringContaining('cannot be revoked here'));
    });
});

describe('the manifest', () => {
    // Compiled to out/test/unit: the manifest is three levels up.
    const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8'));
    const menus: { command: string; when: string; group?: string }[] = manifest.contributes.menus['view/item/context'];

    test('the Grants view sits beside the Tools view, with a welcome while no daemon runs', () => {
        const ids = manifest.contributes.views.llamaAgent.map((view: { id: string }) => view.id);
        expect(ids).toEqual(expect.arrayContaining(['llamaAgent.tools', 'llamaAgent.grants']));
        expect(manifest.contributes.viewsWelcome.some((w: { view: string }) => w.view === 'llamaAgent.grants')).toBe(true);
    });

    test('Allow once, Always allow and Deny on requests; Revoke only on approvals a trusted directory did not give', () => {
        const on = (context: string) =>
            menus.filter((m) => m.when.includes('view == llamaAgent.grants') && m.when.endsWith(`viewItem == ${context}`) && m.group?.startsWith('inline'));
        expect(on(REQUEST_CONTEXT).map((m) => m.command)).toEqual([GrantsCommands.allowOnce, GrantsCommands.allowAlways, GrantsCommands.deny]);
        expect(on(APPROVAL_CONTEXT).map((m) => m.command)).toEqual([GrantsCommands.revoke]);
        expect(menus.filter((m) => m.when.includes(TRUSTED_APPROVAL_CONTEXT))).toEqual([]);
        const titles = Object.fromEntries(manifest.contributes.commands.map((c: { command: string; title: string }) => [c.command, c.title]));
        expect([GrantsCommands.allowOnce, GrantsCommands.allowAlways, GrantsCommands.deny, GrantsCommands.revoke].map((c) => titles[c])).toEqual([
            'Allow once',
            'Always allow',
            'Deny',
            'Revoke',
        ]);
    });
});
