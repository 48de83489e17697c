// The "Llama Agent" log channel: the extension's own messages and the daemon's stderr, each
// daemon line at the level the daemon logged it at.

import type { LogOutputChannel } from 'vscode';

let channel: LogOutputChannel | undefined;

export function registerLogger(logChannel: LogOutputChannel): void {
    channel = logChannel;
}

export function traceInfo(message: string): void {
    channel?.info(message);
}

export function traceWarn(message: string): void {
    channel?.warn(message);
}

export function traceError(message: string, error?: unknown): void {
    const detail = error === undefined ? '' : `: ${error instanceof Error ? error.message : String(error)}`;
    channel?.error(`${message}${detail}`);
}

export function traceDebug(message: string): void {
    channel?.debug(message);
}

export type DaemonLogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

// The daemon's format: "2026-01-02 03:04:05,678 INFO daemon.x: message".
const DAEMON_LINE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) (.*)$/;
const LEVELS: Record<string, DaemonLogLevel> = {
    DEBUG: 'debug',
    INFO: 'info',
    WARNING: 'warn',
    ERROR: 'error',
    CRITICAL: 'error',
};

/**
 * The level and text of one stderr line of the daemon. A line without the daemon's prefix (a
 * traceback, native library output) continues the previous record and keeps its level.
 */
export function parseDaemonLogLine(line: string, previous: DaemonLogLevel): { level: DaemonLogLevel; text: string } {
    const match = DAEMON_LINE.exec(line);
    if (match) {
        return { level: LEVELS[match[1]], text: match[2] };
    }
    return { level: previous, text: line };
}

/** Returns a sink for stderr lines that logs each one to `out` at its level. */
export function daemonLogSink(out: Pick<LogOutputChannel, DaemonLogLevel>): (line: string) => void {
    let previous: DaemonLogLevel = 'info';
    return (line: string) => {
        const { level, text } = parseDaemonLogLine(line, previous);
        previous = level;
        out[level](`[daemon] ${text}`);
    };
}
