import * as path from 'path';

/** clients/vscode, from out/test/<dir>/ where the compiled tests run. */
export const CLIENT_DIR = path.resolve(__dirname, '..', '..');
/** The repository root (override: LLAMA_AGENT_REPO). */
export const REPO = process.env.LLAMA_AGENT_REPO ?? path.resolve(CLIENT_DIR, '..', '..');
export const DAEMON = path.join(REPO, '.venv', 'bin', 'llama-agent');
export const TOOLS_DIR = path.join(REPO, 'build', 'tools');
export const CACHE_DIR = path.join(REPO, 'build', 'test-cache');
export const RESULTS_DIR = path.join(CLIENT_DIR, 'test-results');
export const PROMPT = "Please echo back 'Something to echo'";
export const TEXT = 'Something to echo';
