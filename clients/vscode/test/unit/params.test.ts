import { buildArguments, paramKind, paramPrompt, paramSpecs, parseParam, ParamSpec, validateParam } from '../../src/params';
import { COUNTER, ECHO } from './fixtures';

function spec(kind: ParamSpec['kind'], required = true, extra: Record<string, unknown> = {}): ParamSpec {
    return { name: 'p', schema: { type: kind, ...extra }, kind, required };
}

describe('paramSpecs', () => {
    test('lists required parameters first, each group in schema order', () => {
        const specs = paramSpecs(COUNTER.inputSchema);
        expect(specs.map((s) => [s.name, s.kind, s.required])).toEqual([
            ['to', 'integer', true],
            ['loud', 'boolean', true],
            ['label', 'string', false],
            ['ratio', 'number', false],
        ]);
    });

    test('a schema without properties has no parameters', () => {
        expect(paramSpecs({ type: 'object' })).toEqual([]);
        expect(paramSpecs(undefined)).toEqual([]);
    });

    test('the kind is the first non-null type, strings when unknown', () => {
        expect(paramKind({ type: ['null', 'integer'] })).toBe('integer');
        expect(paramKind({})).toBe('string');
        expect(paramKind({ type: 'weird' })).toBe('string');
    });
});

describe('parseParam type checks', () => {
    test.each([
        ['42', 42],
        ['-3', -3],
        [' +7 ', 7],
    ])('integer accepts %j', (text, value) => {
        expect(parseParam(spec('integer'), text)).toEqual({ ok: true, value, omitted: false });
    });

    test.each(['4.2', 'abc', '', '1e3', '12abc', '1.'])('integer rejects %j', (text) => {
        expect(parseParam(spec('integer'), text)).toEqual({ ok: false, error: 'p must be an integer, e.g. 42' });
    });

    test('integer rejects what a JSON number cannot hold exactly', () => {
        expect(validateParam(spec('integer'), '9007199254740993')).toBe('p is too large for an integer');
    });

    test.each([
        ['3.14', 3.14],
        ['-2', -2],
        ['1e3', 1000],
        ['.5', 0.5],
    ])('number accepts %j', (text, value) => {
        expect(parseParam(spec('number'), text)).toEqual({ ok: true, value, omitted: false });
    });

    test.each(['1.2.3', 'abc', '', 'NaN', 'Infinity', '0x10'])('number rejects %j', (text) => {
        expect(parseParam(spec('number'), text).ok).toBe(false);
    });

    test('boolean takes true/false in any case and nothing else', () => {
        expect(parseParam(spec('boolean'), 'TRUE')).toEqual({ ok: true, value: true, omitted: false });
        expect(parseParam(spec('boolean'), 'false')).toEqual({ ok: true, value: false, omitted: false });
        expect(validateParam(spec('boolean'), 'yes')).toBe('p must be true or false');
        expect(validateParam(spec('boolean'), '1')).toBe('p must be true or false');
    });

    test('a string is kept exactly, spaces and all', () => {
        expect(parseParam(spec('string'), '  Something to echo ')).toEqual({
            ok: true,
            value: '  Something to echo ',
            omitted: false,
        });
        expect(parseParam(spec('string'), '')).toEqual({ ok: true, value: '', omitted: false });
    });

    test('an empty optional parameter is omitted, a required one is not', () => {
        expect(parseParam(spec('integer', false), '  ')).toEqual({ ok: true, value: undefined, omitted: true });
        expect(parseParam(spec('string', false), '')).toEqual({ ok: true, value: undefined, omitted: true });
        expect(parseParam(spec('integer', true), '').ok).toBe(false);
    });

    test('minimum, maximum and enum are checked', () => {
        expect(validateParam(spec('integer', true, { minimum: 1 }), '0')).toBe('p must be at least 1');
        expect(validateParam(spec('number', true, { maximum: 2 }), '2.5')).toBe('p must be at most 2');
        expect(validateParam(spec('string', true, { enum: ['a', 'b'] }), 'c')).toBe('p must be one of "a", "b"');
        expect(validateParam(spec('string', true, { enum: ['a', 'b'] }), 'b')).toBeUndefined();
    });

    test('objects and arrays are JSON of the right shape', () => {
        expect(parseParam(spec('object'), '{"a": 1}')).toEqual({ ok: true, value: { a: 1 }, omitted: false });
        expect(parseParam(spec('array'), '[1, 2]')).toEqual({ ok: true, value: [1, 2], omitted: false });
        expect(validateParam(spec('object'), '[1]')).toBe('p must be a JSON object');
        expect(validateParam(spec('array'), '{')).toBe('p must be JSON ([…])');
    });
});

describe('prompts and arguments', () => {
    test('the prompt names the parameter, its type and its description', () => {
        const [value] = paramSpecs(ECHO.inputSchema);
        expect(paramPrompt(value)).toEqual({
            prompt: 'value (string, required): The text to echo back.',
            placeHolder: 'text',
        });
        const ratio = paramSpecs(COUNTER.inputSchema).find((s) => s.name === 'ratio')!;
        expect(paramPrompt(ratio).prompt).toBe('ratio (number, optional: leave empty to omit)');
        expect(paramPrompt(ratio).placeHolder).toBe('a number, e.g. 3.14');
    });

    test('buildArguments leaves omitted parameters out', () => {
        const specs = paramSpecs(COUNTER.inputSchema);
        const texts: Record<string, string> = { to: '3', loud: 'false', label: '', ratio: '0.5' };
        const args = buildArguments(specs.map((s) => ({ spec: s, result: parseParam(s, texts[s.name]) })));
        expect(args).toEqual({ to: 3, loud: false, ratio: 0.5 });
    });
});
