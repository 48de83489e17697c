// One input box per parameter of a tool's `inputSchema`: what to ask, how to check the typed
// text against the parameter's type, and the JSON value it becomes. No `vscode` import here.

import type { JsonObject, JsonSchema } from './protocol';

export type ParamKind = 'string' | 'integer' | 'number' | 'boolean' | 'object' | 'array';

export interface ParamSpec {
    name: string;
    schema: JsonSchema;
    kind: ParamKind;
    required: boolean;
}

export type ParseResult = { ok: true; value: unknown; omitted: boolean } | { ok: false; error: string };

const KINDS: ParamKind[] = ['string', 'integer', 'number', 'boolean', 'object', 'array'];

/** The kind of input a schema asks for: its first `type` other than null; strings when unsure. */
export function paramKind(schema: JsonSchema): ParamKind {
    const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
    const kind = types.find((t) => t !== 'null' && (KINDS as string[]).includes(t));
    return (kind as ParamKind | undefined) ?? 'string';
}

/** The parameters of an `inputSchema`, required ones first, each group in schema order. */
export function paramSpecs(inputSchema: JsonSchema | undefined): ParamSpec[] {
    const properties = inputSchema?.properties ?? {};
    const required = new Set(inputSchema?.required ?? []);
    const specs = Object.entries(properties).map(([name, schema]) => ({
        name,
        schema,
        kind: paramKind(schema),
        required: required.has(name),
    }));
    return [...specs.filter((s) => s.required), ...specs.filter((s) => !s.required)];
}

const INTEGER = /^[+-]?\d+$/;
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** Checks typed text against a parameter and converts it to the JSON value sent to the tool. */
export function parseParam(spec: ParamSpec, text: string): ParseResult {
    const trimmed = text.trim();
    if (!spec.required && (spec.kind === 'string' ? text === '' : trimmed === '')) {
        return { ok: true, value: undefined, omitted: true };
    }
    let value: unknown;
    switch (spec.kind) {
        case 'string':
            value = text;
            break;
        case 'integer': {
            if (!INTEGER.test(trimmed)) {
                return { ok: false, error: `${spec.name} must be an integer, e.g. 42` };
            }
            const n = Number(trimmed);
            if (!Number.isSafeInteger(n)) {
                return { ok: false, error: `${spec.name} is too large for an integer` };
            }
            value = n;
            break;
        }
        case 'number': {
            if (!NUMBER.test(trimmed)) {
                return { ok: false, error: `${spec.name} must be a number, e.g. 3.14` };
            }
            value = Number(trimmed);
            break;
        }
        case 'boolean': {
            const lower = trimmed.toLowerCase();
            if (lower !== 'true' && lower !== 'false') {
                return { ok: false, error: `${spec.name} must be true or false` };
            }
            value = lower === 'true';
            break;
        }
        case 'object':
        case 'array': {
            try {
                value = JSON.parse(trimmed);
            } catch {
                return { ok: false, error: `${spec.name} must be JSON (${spec.kind === 'array' ? '[…]' : '{…}'})` };
            }
            const isArray = Array.isArray(value);
            const isObject = typeof value === 'object' && value !== null && !isArray;
            if ((spec.kind === 'array' && !isArray) || (spec.kind === 'object' && !isObject)) {
                return { ok: false, error: `${spec.name} must be a JSON ${spec.kind}` };
            }
            break;
        }
    }
    if (typeof value === 'number') {
        const { minimum, maximum } = spec.schema;
        if (typeof minimum === 'number' && value < minimum) {
            return { ok: false, error: `${spec.name} must be at least ${minimum}` };
        }
        if (typeof maximum === 'number' && value > maximum) {
            return { ok: false, error: `${spec.name} must be at most ${maximum}` };
        }
    }
    if (Array.isArray(spec.schema.enum) && !spec.schema.enum.some((allowed) => allowed === value)) {
        return { ok: false, error: `${spec.name} must be one of ${spec.schema.enum.map((e) => JSON.stringify(e)).join(', ')}` };
    }
    return { ok: true, value, omitted: false };
}

/** For an input box's `validateInput`: the error for this text, or undefined when it is fine. */
export function validateParam(spec: ParamSpec, text: string): string | undefined {
    const result = parseParam(spec, text);
    return result.ok ? undefined : result.error;
}

/** The prompt and placeholder of a parameter's input box. */
export function paramPrompt(spec: ParamSpec): { prompt: string; placeHolder: string } {
    const type = spec.kind + (spec.required ? ', required' : ', optional: leave empty to omit');
    const description = spec.schema.description ? `: ${spec.schema.description}` : '';
    const examples: Record<ParamKind, string> = {
        string: 'text',
        integer: 'an integer, e.g. 42',
        number: 'a number, e.g. 3.14',
        boolean: 'true or false',
        object: 'a JSON object, e.g. {"key": "value"}',
        array: 'a JSON array, e.g. [1, 2]',
    };
    const placeHolder = Array.isArray(spec.schema.enum)
        ? `one of ${spec.schema.enum.map((e) => JSON.stringify(e)).join(', ')}`
        : examples[spec.kind];
    return { prompt: `${spec.name} (${type})${description}`, placeHolder };
}

/** Builds the `arguments` object from parsed values, leaving omitted optional ones out. */
export function buildArguments(values: { spec: ParamSpec; result: ParseResult }[]): JsonObject {
    const args: JsonObject = {};
    for (const { spec, result } of values) {
        if (result.ok && !result.omitted) {
            args[spec.name] = result.value;
        }
    }
    return args;
}
