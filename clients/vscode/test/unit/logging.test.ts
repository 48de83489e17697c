import { daemonLogSink, parseDaemonLogLine } from '../../src/common/logging';

describe('daemon stderr lines', () => {
    test('each record is logged at the level the daemon gave it', () => {
        expect(parseDaemonLogLine('2026-11-23 21:13:47,504 INFO llama-agent: serving on stdio', 'error')).toEqual({
            level: 'info',
            text: 'llama-agent: serving on stdio',
        });
        expect(parseDaemonLogLine('2026-11-23 21:13:47,504 WARNING daemon.x: careful', 'info').level).toBe('warn');
        expect(parseDaemonLogLine('2026-11-23 21:13:47,504 CRITICAL daemon.x: boom', 'info').level).toBe('error');
        expect(parseDaemonLogLine('2026-11-23 21:13:47,504 DEBUG daemon.x: detail', 'info').level).toBe('debug');
    });

    test('lines without the prefix continue the previous record', () => {
        const out = { trace: jest.fn(), debug: jest.fn(), info: jest.fn(), warn: jest.fn(), error: jest.fn() };
        const sink = daemonLogSink(out);
        sink('llama.cpp says hello');
        sink('2026-11-23 21:13:47,504 ERROR llama_agent.faces: failed to handle a message');
        sink('Traceback (most recent call last):');
        sink('2026-11-23 21:13:48,000 INFO daemon: back to normal');
        expect(out.info.mock.calls).toEqual([['[daemon] llama.cpp says hello'], ['[daemon] daemon: back to normal']]);
        expect(out.error.mock.calls).toEqual([
            ['[daemon] llama_agent.faces: failed to handle a message'],
            ['[daemon] Traceback (most recent call last):'],
        ]);
    });
});
