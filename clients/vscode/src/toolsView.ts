// The Tools view: every loaded tool (with its parameters) and every file that failed to load.

import { EventEmitter, ThemeColor, ThemeIcon, TreeDataProvider, TreeItem, TreeItemCollapsibleState } from 'vscode';
import { basename, grantsSummary } from './format';
import { ParamSpec, paramSpecs } from './params';
import { AgentConnection, listTools, LoadFailure, ToolInfo, ToolsListResult } from './protocol';

export type ToolsNode =
    | { kind: 'tool'; tool: ToolInfo }
    | { kind: 'param'; tool: ToolInfo; spec: ParamSpec }
    | { kind: 'failures'; failures: LoadFailure[] }
    | { kind: 'failure'; failure: LoadFailure }
    | { kind: 'message'; text: string; error: boolean };

/** The tools view's id (package.json's `views`). */
export const TOOLS_VIEW = 'llamaAgent.tools';
export const TOOL_CONTEXT = 'llamaAgent.tool';
export const FAILURE_CONTEXT = 'llamaAgent.failure';

export function toolTreeItem(node: ToolsNode): TreeItem {
    switch (node.kind) {
        case 'tool': {
            const { tool } = node;
            const hasParams = paramSpecs(tool.inputSchema).length > 0;
            const item = new TreeItem(
                tool.name,
                hasParams ? TreeItemCollapsibleState.Collapsed : TreeItemCollapsibleState.None,
            );
            item.id = `tool:${tool.name}`;
            item.description = `v${tool.version}`;
            item.tooltip = [tool.description, grantsSummary(tool.grants), tool.path].filter(Boolean).join('\n');
            item.iconPath = new ThemeIcon('tools');
            item.contextValue = TOOL_CONTEXT;
            return item;
        }
        case 'param': {
            const { spec } = node;
            const item = new TreeItem(spec.name, TreeItemCollapsibleState.None);
            item.id = `param:${node.tool.name}:${spec.name}`;
            item.description = `${spec.kind}${spec.required ? '' : ', optional'}`;
            item.tooltip = spec.schema.description ?? spec.name;
            item.iconPath = new ThemeIcon('symbol-parameter');
            return item;
        }
        case 'failures': {
            const item = new TreeItem(`Failed to load (${node.failures.length})`, TreeItemCollapsibleState.Expanded);
            item.id = 'failures';
            item.iconPath = new ThemeIcon('error', new ThemeColor('errorForeground'));
            return item;
        }
        case 'failure': {
            const { failure } = node;
            const item = new TreeItem(basename(failure.path), TreeItemCollapsibleState.None);
            item.id = `failure:${failure.path}`;
            item.description = failure.error.split('\n')[0];
            item.tooltip = `${failure.path}\n${failure.error}`;
            item.iconPath = new ThemeIcon('warning', new ThemeColor('problemsWarningIcon.foreground'));
            item.contextValue = FAILURE_CONTEXT;
            return item;
        }
        case 'message': {
            const item = new TreeItem(node.text, TreeItemCollapsibleState.None);
            item.iconPath = new ThemeIcon(node.error ? 'error' : 'info');
            return item;
        }
    }
}

/** The top-level nodes for a tools/list result. */
export function rootNodes(result: ToolsListResult): ToolsNode[] {
    const nodes: ToolsNode[] = result.tools.map((tool) => ({ kind: 'tool', tool }));
    if (result.failed.length > 0) {
        nodes.push({ kind: 'failures', failures: result.failed });
    }
    if (nodes.length === 0) {
        nodes.push({ kind: 'message', text: 'No tools loaded', error: false });
    }
    return nodes;
}

export const LOADING: ToolsNode = { kind: 'message', text: 'Loading tools…', error: false };

export class ToolsTreeProvider implements TreeDataProvider<ToolsNode> {
    private readonly emitter = new EventEmitter<ToolsNode | undefined | void>();
    readonly onDidChangeTreeData = this.emitter.event;
    private roots: ToolsNode[] = [];
    private generation = 0;

    /**
     * `connection` gives the running daemon, or undefined when none runs (the view then shows
     * its welcome content); `list` asks it for its tools.
     */
    constructor(
        private readonly connection: () => AgentConnection | undefined,
        private readonly list: (connection: AgentConnection) => Promise<ToolsListResult> = listTools,
    ) {}

    /** Lists the tools again; a refresh overtaken by a newer one is dropped. */
    async refresh(): Promise<void> {
        const generation = ++this.generation;
        const connection = this.connection();
        if (!connection) {
            this.show([]);
            return;
        }
        if (this.roots.length === 0) {
            this.show([LOADING]); // tools/list waits for the daemon's first load
        }
        let roots: ToolsNode[];
        try {
            roots = rootNodes(await this.list(connection));
        } catch (error) {
            roots = [{ kind: 'message', text: `tools/list failed: ${error instanceof Error ? error.message : String(error)}`, error: true }];
        }
        if (generation === this.generation) {
            this.show(roots);
        }
    }

    private show(roots: ToolsNode[]): void {
        this.roots = roots;
        this.emitter.fire();
    }

    getTreeItem(node: ToolsNode): TreeItem {
        return toolTreeItem(node);
    }

    getChildren(node?: ToolsNode): ToolsNode[] {
        if (!node) {
            return this.roots;
        }
        if (node.kind === 'tool') {
            return paramSpecs(node.tool.inputSchema).map((spec) => ({ kind: 'param', tool: node.tool, spec }));
        }
        if (node.kind === 'failures') {
            return node.failures.map((failure) => ({ kind: 'failure', failure }));
        }
        return [];
    }

    dispose(): void {
        this.emitter.dispose();
    }
}
