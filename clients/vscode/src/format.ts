// Short texts about tools and models, shared by the quick pick, the Tools view and the channels.
// No `vscode` import here.

import type { ConfiguredModel, Grants, LoadFailure, RunModel, ToolInfo } from './protocol';

export function formatBytes(bytes: number): string {
    const units = ['B', 'KiB', 'MiB', 'GiB'];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1 && value % 1024 === 0) {
        value /= 1024;
        unit += 1;
    }
    return `${value} ${units[unit]}`;
}

/** One line saying what a tool may use: its limits, directories, environment and network. */
export function grantsSummary(grants: Grants | undefined): string {
    if (!grants) {
        return 'grants unknown';
    }
    const parts: string[] = [];
    if (grants.timeoutSeconds !== undefined) {
        parts.push(`timeout ${grants.timeoutSeconds} s`);
    }
    if (grants.memoryBytes !== undefined) {
        parts.push(`memory ${formatBytes(grants.memoryBytes)}`);
    }
    if (grants.outputBytes !== undefined) {
        parts.push(`output ${formatBytes(grants.outputBytes)}`);
    }
    const dirs = grants.dirs ?? [];
    parts.push(dirs.length ? `dirs ${dirs.map((d) => `${d.host} → ${d.guest} (${d.mode})`).join(', ')}` : 'no dirs');
    const env = grants.env ?? [];
    parts.push(env.length ? `env ${env.join(', ')}` : 'no env');
    parts.push(grants.network ? 'network' : 'no network');
    return parts.join(' · ');
}

/** The quick pick row of a tool: name, version, description and grants. */
export function toolRow(tool: ToolInfo): { label: string; description: string; detail: string } {
    const policy = tool.policyError ? ` · policy error: ${tool.policyError}` : '';
    return {
        label: `$(tools) ${tool.name}`,
        description: `v${tool.version}`,
        detail: `${tool.description} — ${grantsSummary(tool.grants)}${policy}`,
    };
}

export function basename(file: string): string {
    const parts = file.split(/[\\/]/);
    return parts[parts.length - 1] || file;
}

/** The quick pick row of a file that failed to load. */
export function failureRow(failure: LoadFailure): { label: string; description: string; detail: string } {
    return { label: `$(error) ${basename(failure.path)}`, description: failure.path, detail: failure.error };
}

/**
 * A model and where it runs: `NAME (llama)`, `NAME (openai at URL)`. A model without a name (the
 * daemon's configuration when `--model` was not given) is the backend's default.
 */
export function describeModel(model: RunModel | ConfiguredModel): string {
    const name = model.name || (model.backend === 'openai' ? "the server's only model" : 'the embedded model');
    const where = model.baseUrl ? `${model.backend} at ${model.baseUrl}` : model.backend;
    return `${name} (${where})`;
}
