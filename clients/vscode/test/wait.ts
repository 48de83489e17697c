/** Polls `check` every 50 ms until it returns a value, or rejects after `timeoutMs`. */
export function waitFor<T>(check: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve, reject) => {
        const poll = () => {
            const value = check();
            if (value !== undefined) {
                resolve(value);
            } else if (Date.now() > deadline) {
                reject(new Error(`timed out waiting for ${what}`));
            } else {
                setTimeout(poll, 50);
            }
        };
        poll();
    });
}
