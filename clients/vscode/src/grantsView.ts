// The Grants view: the tools' requests for grants that wait for the person, each showing exactly
// what it asks (directories with their mode, the workspace, environment variables, limits above
// the defaults), with Allow once / Always allow / Deny; and the approvals, with Revoke.
//
// Every text from the daemon goes into plain-string labels, descriptions and tooltips (never
// markdown), with its invisible characters made visible (grants.ts's `visible`).

import { EventEmitter, ThemeColor, ThemeIcon, TreeDataProvider, TreeItem, TreeItemCollapsibleState, ViewBadge } from 'vscode';
import { showErrorMessage, showInformationMessage } from './common/vscodeapi';
import {
    answerGrantRequest,
    ApprovalInfo,
    describeGrants,
    describeLimit,
    DirMode,
    dirWords,
    GrantAction,
    GrantRequestInfo,
    GrantSet,
    GrantsListResult,
    isWorkspace,
    listGrants,
    modeWords,
    RequestedDir,
    revokeGrants,
    summarizeGrants,
    visible,
} from './grants';
import { AgentConnection, errorMessage } from './protocol';

/** The view's id (package.json's `views`). */
export const GRANTS_VIEW = 'llamaAgent.grants';
export const REQUEST_CONTEXT = 'llamaAgent.grantRequest';
export const APPROVAL_CONTEXT = 'llamaAgent.approval';
/** An approval by a trusted directory: nothing here can take it back (no Revoke). */
export const TRUSTED_APPROVAL_CONTEXT = 'llamaAgent.approval.trusted';

export const GrantsCommands = {
    allowOnce: 'llamaAgent.grants.allowOnce',
    allowAlways: 'llamaAgent.grants.allowAlways',
    deny: 'llamaAgent.grants.deny',
    revoke: 'llamaAgent.grants.revoke',
    refresh: 'llamaAgent.grants.refresh',
} as const;

/** JSON-RPC's "method not found": a daemon older than the Grants view. */
const METHOD_NOT_FOUND = -32601;

export type GrantsNode =
    | { kind: 'group'; group: 'pending' | 'approved'; count: number }
    | { kind: 'request'; request: GrantRequestInfo }
    | { kind: 'approval'; approval: ApprovalInfo }
    | { kind: 'detail'; label: string; description: string; icon: string; tooltip: string }
    | { kind: 'message'; text: string; tooltip?: string; error: boolean };

export const PENDING_LABEL = 'Waiting for you';
export const APPROVED_LABEL = 'Approved';

const SCOPE_WORDS: { [scope: string]: string } = {
    'grants file':
        'Approved in the grants file (llama-agent tools grant, or "Always allow"): it holds for every daemon until revoked.',
    'this session': 'Approved for this daemon process ("Allow once"): it ends when the daemon stops, or when revoked.',
    'trusted directory':
        'Granted because the tool lies in a trusted tools directory (the bundled tools, or --trusted-tools-dir): ' +
        'its policy applies without asking, so it cannot be revoked here. Move the tool out of that directory, ' +
        'or stop trusting the directory, to take it back.',
};

const DENIED_WORDS = 'Denied in this daemon process: it runs with the defaults. You may still allow it.';

const ACTIONS_HELP =
    'Allow once: for this daemon process. Always allow: also written to the grants file, for every daemon. ' +
    'Deny: it keeps running with the defaults, and is not asked about again in this process.';

function lines(grants: GrantSet): string {
    const asked = describeGrants(grants);
    return asked.length > 0 ? asked.map((line) => `• ${line}`).join('\n') : 'nothing beyond the defaults';
}

export function grantsTreeItem(node: GrantsNode): TreeItem {
    switch (node.kind) {
        case 'group': {
            const pending = node.group === 'pending';
            const item = new TreeItem(pending ? PENDING_LABEL : APPROVED_LABEL, TreeItemCollapsibleState.Expanded);
            item.description = String(node.count);
            item.iconPath = new ThemeIcon(pending ? 'bell' : 'pass');
            item.tooltip = pending
                ? 'Tools whose policy asks for more than the defaults; until approved they run with the defaults.'
                : 'Tools whose requested grants apply.';
            return item;
        }
        case 'request': {
            const { request } = node;
            const item = new TreeItem(visible(request.tool), TreeItemCollapsibleState.Expanded);
            item.description = `${request.denied ? 'denied · ' : ''}${summarizeGrants(request)}`;
            const message = request.message ? `${visible(request.message)}\n\n` : '';
            const denied = request.denied ? `${DENIED_WORDS}\n\n` : '';
            item.tooltip = `${message}${denied}${visible(request.tool)} asks for:\n${lines(request)}\n\n${ACTIONS_HELP}`;
            item.iconPath = request.denied
                ? new ThemeIcon('circle-slash')
                : new ThemeIcon('shield', new ThemeColor('problemsWarningIcon.foreground'));
            item.contextValue = REQUEST_CONTEXT;
            return item;
        }
        case 'approval': {
            const { approval } = node;
            const item = new TreeItem(visible(approval.tool), TreeItemCollapsibleState.Collapsed);
            item.description = approval.scope;
            item.tooltip = `${visible(approval.tool)} is granted:\n${lines(approval)}\n\n${SCOPE_WORDS[approval.scope]}`;
            item.iconPath = new ThemeIcon(approval.scope === 'trusted directory' ? 'lock' : 'verified');
            item.contextValue = approval.scope === 'trusted directory' ? TRUSTED_APPROVAL_CONTEXT : APPROVAL_CONTEXT;
            return item;
        }
        case 'detail': {
            const item = new TreeItem(node.label, TreeItemCollapsibleState.None);
            item.description = node.description;
            item.tooltip = node.tooltip;
            item.iconPath = new ThemeIcon(node.icon);
            return item;
        }
        case 'message': {
            const item = new TreeItem(node.text, TreeItemCollapsibleState.None);
            item.tooltip = node.tooltip ?? node.text;
            item.iconPath = node.error ? new ThemeIcon('error', new ThemeColor('errorForeground')) : new ThemeIcon('info');
            return item;
        }
    }
}

/** "read-write, at /data"; "read-only, the workspace" for the client's workspace folder. */
function dirDescription(dir: RequestedDir, workspace: DirMode | null): string {
    if (workspace !== null && isWorkspace(dir)) {
        return `${modeWords(dir.mode)}, the workspace`;
    }
    return dir.guest === undefined ? modeWords(dir.mode) : `${modeWords(dir.mode)}, at ${visible(dir.guest)}`;
}

/** One child per thing asked: each directory with its mode, the workspace, each variable, each limit. */
export function detailNodes(grants: GrantSet): GrantsNode[] {
    const nodes: GrantsNode[] = grants.dirs.map((dir) => ({
        kind: 'detail',
        label: visible(dir.path),
        description: dirDescription(dir, grants.workspace),
        icon: grants.workspace !== null && isWorkspace(dir) ? 'root-folder' : dir.mode === 'rw' ? 'edit' : 'folder',
        tooltip: `${modeWords(dir.mode)} access to ${dirWords(dir, grants.workspace)}`,
    }));
    if (grants.workspace !== null && !grants.dirs.some(isWorkspace)) {
        nodes.push({
            kind: 'detail',
            label: 'the workspace',
            description: modeWords(grants.workspace),
            icon: 'root-folder',
            tooltip: `${modeWords(grants.workspace)} access to the workspace folder, seen by the tool at /workspace`,
        });
    }
    for (const name of grants.env) {
        nodes.push({
            kind: 'detail',
            label: visible(name),
            description: 'environment variable',
            icon: 'symbol-variable',
            tooltip: `the value of the environment variable ${visible(name)}`,
        });
    }
    for (const [name, value] of Object.entries(grants.limits)) {
        const [label, amount] = describeLimit(name, value);
        nodes.push({ kind: 'detail', label, description: amount, icon: 'dashboard', tooltip: `${label}: ${amount} (above the default)` });
    }
    if (nodes.length === 0) {
        nodes.push({ kind: 'message', text: 'nothing beyond the defaults', error: false });
    }
    return nodes;
}

/** The two groups (an empty one holds a message saying so). */
export function rootNodes(result: GrantsListResult): GrantsNode[] {
    return [
        { kind: 'group', group: 'pending', count: result.pending.length },
        { kind: 'group', group: 'approved', count: result.approved.length },
    ];
}

/** What a failed grants/list says in the view. */
export function failureNode(error: unknown): GrantsNode {
    if ((error as { code?: unknown } | undefined)?.code === METHOD_NOT_FOUND) {
        return {
            kind: 'message',
            text: 'This llama-agent has no grants/list: update it',
            tooltip:
                'The daemon is older than the Grants view. Until it is updated, approve a tool with ' +
                '`llama-agent tools grant NAME`, or answer the questions it puts in notifications.',
            error: true,
        };
    }
    const errorLines = errorMessage(error).split('\n').map(visible);
    return { kind: 'message', text: `grants/list failed: ${errorLines[0]}`, tooltip: errorLines.join('\n'), error: true };
}

export const LOADING: GrantsNode = { kind: 'message', text: 'Loading grants…', error: false };

export class GrantsTreeProvider implements TreeDataProvider<GrantsNode> {
    private readonly emitter = new EventEmitter<GrantsNode | undefined | void>();
    readonly onDidChangeTreeData = this.emitter.event;
    private roots: GrantsNode[] = [];
    private result: GrantsListResult | undefined;
    private generation = 0;

    /**
     * `connection` gives the running daemon, or undefined when none runs (the view then shows its
     * welcome content); `list` asks it for the grants.
     */
    constructor(
        private readonly connection: () => AgentConnection | undefined,
        private readonly list: (connection: AgentConnection) => Promise<GrantsListResult> = listGrants,
    ) {}

    /** Lists the grants again; a refresh overtaken by a newer one is dropped. */
    async refresh(): Promise<void> {
        const generation = ++this.generation;
        const connection = this.connection();
        if (!connection) {
            this.show(undefined, []);
            return;
        }
        if (this.roots.length === 0) {
            this.show(undefined, [LOADING]);
        }
        let result: GrantsListResult | undefined;
        let roots: GrantsNode[];
        try {
            result = await this.list(connection);
            roots = rootNodes(result);
        } catch (error) {
            roots = [failureNode(error)];
        }
        if (generation === this.generation) {
            this.show(result, roots);
        }
    }

    /** How many requests wait for the person's answer (0 while unknown); denied ones do not. */
    get pendingCount(): number {
        return this.result?.pending.filter((request) => !request.denied).length ?? 0;
    }

    /** The view's badge: the number of requests waiting, none when nothing waits. */
    badge(): ViewBadge | undefined {
        const count = this.pendingCount;
        if (count === 0) {
            return undefined;
        }
        return { value: count, tooltip: `${count} ${count === 1 ? 'tool asks' : 'tools ask'} for grants` };
    }

    private show(result: GrantsListResult | undefined, roots: GrantsNode[]): void {
        this.result = result;
        this.roots = roots;
        this.emitter.fire();
    }

    getTreeItem(node: GrantsNode): TreeItem {
        return grantsTreeItem(node);
    }

    getChildren(node?: GrantsNode): GrantsNode[] {
        if (!node) {
            return this.roots;
        }
        switch (node.kind) {
            case 'group': {
                const result = this.result ?? { pending: [], approved: [] };
                if (node.group === 'pending') {
                    return result.pending.length > 0
                        ? result.pending.map((request) => ({ kind: 'request', request }))
                        : [{ kind: 'message', text: 'No tool is waiting for grants', error: false }];
                }
                return result.approved.length > 0
                    ? result.approved.map((approval) => ({ kind: 'approval', approval }))
                    : [{ kind: 'message', text: 'No tool has grants beyond the defaults', error: false }];
            }
            case 'request':
                return detailNodes(node.request);
            case 'approval':
                return detailNodes(node.approval);
            default:
                return [];
        }
    }

    dispose(): void {
        this.emitter.dispose();
    }
}

export interface GrantsCommandContext {
    /** The running daemon, started if needed; undefined when it cannot start (the user was told). */
    connect(): Promise<AgentConnection | undefined>;
    /** Lists the grants again. */
    refresh(): Promise<void>;
}

function isNode(value: unknown, kind: GrantsNode['kind']): boolean {
    return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === kind;
}

/** Why a grants method failed, for the person. */
function failure(what: string, method: string, error: unknown): string {
    if ((error as { code?: unknown } | undefined)?.code === METHOD_NOT_FOUND) {
        return `Llama Agent: ${what}: this llama-agent has no ${method}; update it, or use \`llama-agent tools grant|revoke\`.`;
    }
    return `Llama Agent: ${what} failed: ${visible(errorMessage(error))}`;
}

/** Allow once / Always allow / Deny on a pending request (the view's item `target`). */
export async function answerCommand(ctx: GrantsCommandContext, target: unknown, action: GrantAction): Promise<boolean | undefined> {
    if (!isNode(target, 'request')) {
        return undefined; // only the view's items carry a request
    }
    const { request } = target as { request: GrantRequestInfo };
    const connection = await ctx.connect();
    if (!connection) {
        return undefined;
    }
    const tool = visible(request.tool);
    let changed: boolean;
    try {
        changed = await answerGrantRequest(connection, request.id, action);
    } catch (error) {
        void showErrorMessage(failure(`"${action}" for ${tool}`, 'grants/answer', error));
        await ctx.refresh();
        return undefined;
    }
    // "Deny" never approves (changed is false): the request stays, marked denied.
    if (!changed && action !== 'Deny') {
        void showInformationMessage(`Llama Agent: ${tool}'s request was answered already, or no longer waits.`);
    }
    await ctx.refresh();
    return changed;
}

/** Revoke on an approval (the view's item `target`). */
export async function revokeCommand(ctx: GrantsCommandContext, target: unknown): Promise<boolean | undefined> {
    if (!isNode(target, 'approval')) {
        return undefined;
    }
    const { approval } = target as { approval: ApprovalInfo };
    const tool = visible(approval.tool);
    if (approval.scope === 'trusted directory') {
        void showInformationMessage(`Llama Agent: ${SCOPE_WORDS['trusted directory']}`);
        return undefined;
    }
    const connection = await ctx.connect();
    if (!connection) {
        return undefined;
    }
    let revoked: boolean;
    try {
        revoked = await revokeGrants(connection, approval.tool);
    } catch (error) {
        void showErrorMessage(failure(`revoking ${tool}'s grants`, 'grants/revoke', error));
        await ctx.refresh();
        return undefined;
    }
    if (!revoked) {
        void showInformationMessage(`Llama Agent: ${tool} had no approval left to revoke.`);
    }
    await ctx.refresh();
    return revoked;
}

/** The view's commands by id: its items' actions, and Refresh. */
export function grantsCommandHandlers(ctx: GrantsCommandContext): { [command: string]: (target?: unknown) => Promise<unknown> } {
    return {
        [GrantsCommands.allowOnce]: (target) => answerCommand(ctx, target, 'Allow once'),
        [GrantsCommands.allowAlways]: (target) => answerCommand(ctx, target, 'Always allow'),
        [GrantsCommands.deny]: (target) => answerCommand(ctx, target, 'Deny'),
        [GrantsCommands.revoke]: (target) => revokeCommand(ctx, target),
        [GrantsCommands.refresh]: async () => {
            await ctx.connect();
            await ctx.refresh();
        },
    };
}
