// The daemon's grants methods, typed: the tools' requests for grants that wait for the person
// (grants/list), their answers (grants/answer), taking an approval back (grants/revoke), and the
// notification that either set changed (grants/didChange).
//
// What the Grants view shows a person before they approve must be exactly what the daemon will
// grant, so its answers are checked here, field by field: an answer this module cannot read is
// an error, never a partly shown request with an Allow button. No `vscode` import here.

import { CancellationToken, Disposable, NotificationType, ParameterStructures, RequestType } from 'vscode-jsonrpc';
import { formatBytes } from './format';
import { AgentConnection, JsonObject } from './protocol';

/**
 * The extension's `initializationOptions`: it shows the pending requests in its Grants view, so
 * the daemon does not ask about them with window/showMessageRequest notifications.
 */
export const GRANTS_VIEW_OPTIONS = { grantsView: true } as const;

export type DirMode = 'ro' | 'rw';

export interface RequestedDir {
    /** The directory on this machine, as it is. */
    path: string;
    mode: DirMode;
    /** Where the tool sees it (older answers may leave it out). */
    guest?: string;
}

/** Where a tool sees the client's workspace folder. */
export const WORKSPACE_GUEST = '/workspace';

/** A limit's value as the daemon sends it. */
export type LimitValue = number | string | boolean;

/** What a tool's policy asks for beyond the defaults. */
export interface GrantSet {
    dirs: RequestedDir[];
    /** Names of environment variables. */
    env: string[];
    /** The limits it asks above the defaults, by name. */
    limits: { [name: string]: LimitValue };
    /** The client's workspace folder (at /workspace), or null when not asked for. */
    workspace: DirMode | null;
}

/** A request waiting for the person. */
export interface GrantRequestInfo extends GrantSet {
    id: string;
    tool: string;
    /** The daemon's sentence about it (paths quoted and made visible by the daemon). */
    message: string;
    /** Denied in this daemon process: it runs with the defaults, and may still be allowed. */
    denied: boolean;
}

export const APPROVAL_SCOPES = ['grants file', 'this session', 'trusted directory'] as const;
export type ApprovalScope = (typeof APPROVAL_SCOPES)[number];

/** A request the person (or a trusted directory) approved. */
export interface ApprovalInfo extends GrantSet {
    tool: string;
    scope: ApprovalScope;
}

export interface GrantsListResult {
    pending: GrantRequestInfo[];
    approved: ApprovalInfo[];
}

export const GRANT_ACTIONS = ['Allow once', 'Always allow', 'Deny'] as const;
export type GrantAction = (typeof GRANT_ACTIONS)[number];

export interface GrantsAnswerParams {
    id: string;
    action: GrantAction;
}

// The results are `unknown` on the wire: they are checked below before anything is shown.
export const GrantsListRequest = new RequestType<JsonObject, unknown, void>('grants/list');
export const GrantsAnswerRequest = new RequestType<GrantsAnswerParams, unknown, void>('grants/answer');
export const GrantsRevokeRequest = new RequestType<{ tool: string }, unknown, void>('grants/revoke');
// Sent without params. Declared "by name" so that vscode-jsonrpc does not log a parameter count
// mismatch for it; whatever params come are ignored.
export const GrantsDidChangeNotification = new NotificationType<unknown>('grants/didChange', ParameterStructures.byName);

/** An answer of the daemon's that is not what the protocol says. */
export class MalformedAnswer extends Error {
    constructor(method: string, problem: string) {
        super(`the daemon's answer to ${method} is not understood: ${problem}`);
        this.name = 'MalformedAnswer';
    }
}

type Check = (problem: string) => never;

function isObject(value: unknown): value is { [key: string]: unknown } {
    return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function string(value: unknown, where: string, fail: Check): string {
    return typeof value === 'string' ? value : fail(`${where} is not a string`);
}

function boolean(value: unknown, where: string, fail: Check): boolean {
    return typeof value === 'boolean' ? value : fail(`${where} is not a boolean`);
}

function mode(value: unknown, where: string, fail: Check): DirMode {
    return value === 'ro' || value === 'rw' ? value : fail(`${where} is not "ro" or "rw"`);
}

function array(value: unknown, where: string, fail: Check): unknown[] {
    return Array.isArray(value) ? value : fail(`${where} is not an array`);
}

function object(value: unknown, where: string, fail: Check): { [key: string]: unknown } {
    return isObject(value) ? value : fail(`${where} is not an object`);
}

function limitValue(value: unknown, where: string, fail: Check): LimitValue {
    if ((typeof value === 'number' && Number.isFinite(value)) || typeof value === 'string' || typeof value === 'boolean') {
        return value;
    }
    return fail(`${where} is not a number, string or boolean`);
}

function grantSet(value: { [key: string]: unknown }, where: string, fail: Check): GrantSet {
    const dirs = array(value.dirs, `${where}.dirs`, fail).map((entry, index) => {
        const at = `${where}.dirs[${index}]`;
        const dir = object(entry, at, fail);
        const requested: RequestedDir = { path: string(dir.path, `${at}.path`, fail), mode: mode(dir.mode, `${at}.mode`, fail) };
        if (dir.guest !== undefined) {
            requested.guest = string(dir.guest, `${at}.guest`, fail);
        }
        return requested;
    });
    const env = array(value.env, `${where}.env`, fail).map((name, index) => string(name, `${where}.env[${index}]`, fail));
    const limits: { [name: string]: LimitValue } = {};
    for (const [name, limit] of Object.entries(object(value.limits, `${where}.limits`, fail))) {
        limits[name] = limitValue(limit, `${where}.limits.${name}`, fail);
    }
    const workspace = value.workspace == null ? null : mode(value.workspace, `${where}.workspace`, fail);
    return { dirs, env, limits, workspace };
}

/** A grants/list result, checked; throws MalformedAnswer naming the first field that is wrong. */
export function parseGrantsList(value: unknown): GrantsListResult {
    const fail: Check = (problem) => {
        throw new MalformedAnswer('grants/list', problem);
    };
    const result = object(value, 'the result', fail);
    const pending = array(result.pending, 'pending', fail).map((entry, index) => {
        const where = `pending[${index}]`;
        const request = object(entry, where, fail);
        return {
            id: string(request.id, `${where}.id`, fail),
            tool: string(request.tool, `${where}.tool`, fail),
            message: string(request.message ?? '', `${where}.message`, fail),
            denied: request.denied === undefined ? false : boolean(request.denied, `${where}.denied`, fail),
            ...grantSet(request, where, fail),
        };
    });
    const approved = array(result.approved, 'approved', fail).map((entry, index) => {
        const where = `approved[${index}]`;
        const approval = object(entry, where, fail);
        const scope = approval.scope;
        if (!APPROVAL_SCOPES.includes(scope as ApprovalScope)) {
            fail(`${where}.scope is not one of ${APPROVAL_SCOPES.map((s) => `"${s}"`).join(', ')}`);
        }
        return { tool: string(approval.tool, `${where}.tool`, fail), scope: scope as ApprovalScope, ...grantSet(approval, where, fail) };
    });
    return { pending, approved };
}

/** The boolean `key` of a method's result object; throws MalformedAnswer otherwise. */
function flag(method: string, value: unknown, key: string): boolean {
    if (isObject(value) && typeof value[key] === 'boolean') {
        return value[key] as boolean;
    }
    throw new MalformedAnswer(method, `the result has no boolean "${key}"`);
}

export async function listGrants(connection: AgentConnection, token?: CancellationToken): Promise<GrantsListResult> {
    return parseGrantsList(await connection.sendRequest(GrantsListRequest, {}, token));
}

/** Answers a pending request; whether that approved it now ("Deny": false, it stays pending, marked denied). */
export async function answerGrantRequest(connection: AgentConnection, id: string, action: GrantAction): Promise<boolean> {
    return flag('grants/answer', await connection.sendRequest(GrantsAnswerRequest, { id, action }), 'changed');
}

/** Takes back the approvals of `tool` (the grants file's and this session's); whether there were any. */
export async function revokeGrants(connection: AgentConnection, tool: string): Promise<boolean> {
    return flag('grants/revoke', await connection.sendRequest(GrantsRevokeRequest, { tool }), 'revoked');
}

export function onGrantsDidChange(connection: AgentConnection, handler: () => void): Disposable {
    return connection.onNotification(GrantsDidChangeNotification, () => handler());
}

// -- words for the person ------------------------------------------------------------------------

// Control, format (bidi overrides, zero-width), line/paragraph separators, lone surrogates and
// unassigned code points: the daemon's `visible` (common/text.py) hides the same categories.
const HIDDEN = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{Cn}]/gu;
const SHORT_ESCAPES: { [char: string]: string } = { '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/**
 * `text` with every character that could change what the person reads written as an escape:
 * a directory named "data\n(read-only)" or holding a right-to-left override shows as it is.
 */
export function visible(text: string): string {
    return text.replace(HIDDEN, (char) => {
        if (SHORT_ESCAPES[char]) {
            return SHORT_ESCAPES[char];
        }
        const code = char.codePointAt(0) ?? 0;
        if (code <= 0xff) {
            return `\\x${code.toString(16).padStart(2, '0')}`;
        }
        return code <= 0xffff ? `\\u${code.toString(16).padStart(4, '0')}` : `\\U${code.toString(16).padStart(8, '0')}`;
    });
}

export function modeWords(value: DirMode): string {
    return value === 'rw' ? 'read-write' : 'read-only';
}

// The daemon's limits, by name without case or underscores (timeout_seconds, timeoutSeconds).
const LIMIT_WORDS: { [key: string]: [string, (value: number) => string] } = {
    timeoutseconds: ['time per call', (v) => `${v} s`],
    memorybytes: ['memory', formatBytes],
    memories: ['linear memories', String],
    outputbytes: ['output per stream', formatBytes],
    writebytes: ['bytes written per call', formatBytes],
};

/** A limit as a label and a value: ["memory", "1 GiB"]. */
export function describeLimit(name: string, value: LimitValue): [string, string] {
    const known = LIMIT_WORDS[name.toLowerCase().replace(/_/g, '')];
    if (known && typeof value === 'number') {
        return [known[0], known[1](value)];
    }
    return [visible(name), visible(String(value))];
}

/** Whether `dir` is the client's workspace folder (the daemon lists it among the dirs once it knows it). */
export function isWorkspace(dir: RequestedDir): boolean {
    return dir.guest === WORKSPACE_GUEST;
}

/** A directory for a sentence: its path, where the tool sees it, and whether it is the workspace. */
export function dirWords(dir: RequestedDir, workspace: DirMode | null): string {
    const what = workspace !== null && isWorkspace(dir) ? `the workspace ${visible(dir.path)}` : visible(dir.path);
    return dir.guest === undefined ? what : `${what} (at ${visible(dir.guest)})`;
}

/** One line per thing asked: directories with their mode, the workspace, variables, limits. */
export function describeGrants(grants: GrantSet): string[] {
    const lines = grants.dirs.map((dir) => `${modeWords(dir.mode)}: ${dirWords(dir, grants.workspace)}`);
    if (grants.workspace !== null && !grants.dirs.some(isWorkspace)) {
        lines.push(`${modeWords(grants.workspace)}: the workspace (at /workspace)`);
    }
    if (grants.env.length > 0) {
        lines.push(`environment variables: ${grants.env.map(visible).join(', ')}`);
    }
    for (const [name, value] of Object.entries(grants.limits)) {
        const [label, amount] = describeLimit(name, value);
        lines.push(`${label}: ${amount}`);
    }
    return lines;
}

/** A short summary for a tree item's description: "1 dir (rw), 1 variable, 2 limits". */
export function summarizeGrants(grants: GrantSet): string {
    const parts: string[] = [];
    const dirs = grants.workspace === null ? grants.dirs : grants.dirs.filter((dir) => !isWorkspace(dir));
    if (dirs.length > 0) {
        const modes = [...new Set(dirs.map((dir) => dir.mode))].join('/');
        parts.push(`${dirs.length} ${dirs.length === 1 ? 'directory' : 'directories'} (${modes})`);
    }
    if (grants.workspace !== null) {
        parts.push(`workspace (${grants.workspace})`);
    }
    if (grants.env.length > 0) {
        parts.push(`${grants.env.length} ${grants.env.length === 1 ? 'variable' : 'variables'}`);
    }
    const limits = Object.keys(grants.limits).length;
    if (limits > 0) {
        parts.push(`${limits} ${limits === 1 ? 'limit' : 'limits'}`);
    }
    return parts.length > 0 ? parts.join(', ') : 'nothing beyond the defaults';
}
