import { ThemeIcon, TreeItemCollapsibleState } from 'vscode';
import type { AgentConnection, ToolsListResult } from '../../src/protocol';
import { LOADING, rootNodes, TOOL_CONTEXT, toolTreeItem, ToolsNode, ToolsTreeProvider } from '../../src/toolsView';

const CONNECTION = {} as AgentConnection;

/** A provider over a running daemon whose tools/list answers with `list`. */
function provider(list: () => Promise<ToolsListResult>): ToolsTreeProvider {
    return new ToolsTreeProvider(() => CONNECTION, list);
}
import { COUNTER, ECHO, LISTING } from './fixtures';

function icon(node: ToolsNode): string {
    return (toolTreeItem(node).iconPath as ThemeIcon).id;
}

describe('tree items', () => {
    test('a tool shows its name, version, grants and can be invoked', () => {
        const item = toolTreeItem({ kind: 'tool', tool: ECHO });
        expect(item.label).toBe('echo');
        expect(item.description).toBe('v1.0.0');
        expect(item.contextValue).toBe(TOOL_CONTEXT);
        expect(item.collapsibleState).toBe(TreeItemCollapsibleState.Collapsed);
        expect(item.tooltip).toBe(
            'Returns the given value unchanged.\n' +
                'timeout 10 s · memory 256 MiB · output 1 MiB · no dirs · no env · no network\n' +
                '/repo/build/tools/echo.wasm',
        );
        expect(icon({ kind: 'tool', tool: ECHO })).toBe('tools');
    });

    test('a tool without parameters does not expand', () => {
        const item = toolTreeItem({ kind: 'tool', tool: { ...ECHO, inputSchema: { type: 'object' } } });
        expect(item.collapsibleState).toBe(TreeItemCollapsibleState.None);
    });

    test('a load failure shows the file name and the first line of the error', () => {
        const failure = LISTING.failed[0];
        const item = toolTreeItem({ kind: 'failure', failure });
        expect(item.label).toBe('broken.wasm');
        expect(item.description).toBe('not a valid WebAssembly component: bad magic');
        expect(item.tooltip).toBe(`${failure.path}\n${failure.error}`);
        expect(icon({ kind: 'failure', failure })).toBe('warning');
        const group = toolTreeItem({ kind: 'failures', failures: LISTING.failed });
        expect(group.label).toBe('Failed to load (1)');
        expect(group.collapsibleState).toBe(TreeItemCollapsibleState.Expanded);
    });

    test('root nodes: tools in order, then the failures; a message when there is nothing', () => {
        expect(rootNodes(LISTING).map((n) => n.kind)).toEqual(['tool', 'tool', 'failures']);
        expect(rootNodes({ tools: [], failed: [] })).toEqual([{ kind: 'message', text: 'No tools loaded', error: false }]);
    });
});

describe('ToolsTreeProvider', () => {
    test('refresh lists the tools, their parameters and the failures, and fires a change', async () => {
        const list = jest.fn(async () => LISTING);
        const tree = provider(list);
        const changed = jest.fn();
        tree.onDidChangeTreeData(changed);
        expect(tree.getChildren()).toEqual([]);
        const refreshing = tree.refresh();
        expect(tree.getChildren()).toEqual([LOADING]); // while tools/list waits for the first load
        await refreshing;
        expect(list).toHaveBeenCalledWith(CONNECTION);
        expect(changed).toHaveBeenCalledTimes(2);
        const roots = tree.getChildren();
        expect(roots.map((n) => tree.getTreeItem(n).label)).toEqual(['counter', 'echo', 'Failed to load (1)']);
        const params = tree.getChildren(roots[0]);
        expect(params.map((n) => tree.getTreeItem(n).label)).toEqual(['to', 'loud', 'label', 'ratio']);
        expect(tree.getTreeItem(params[0]).description).toBe('integer');
        expect(tree.getTreeItem(params[2]).description).toBe('string, optional');
        const failures = tree.getChildren(roots[2]);
        expect(failures.map((n) => tree.getTreeItem(n).label)).toEqual(['broken.wasm']);
    });

    test('a refresh after tools/didChange shows the new set', async () => {
        let listing = LISTING;
        const tree = provider(async () => listing);
        await tree.refresh();
        listing = { tools: [ECHO], failed: [] };
        const refreshing = tree.refresh();
        expect(tree.getChildren()).toHaveLength(3); // the old set stays until the new one arrives
        await refreshing;
        expect(tree.getChildren().map((n) => tree.getTreeItem(n).label)).toEqual(['echo']);
    });

    test('no daemon: no nodes (the view shows its welcome); a failing tools/list: an error node', async () => {
        const list = jest.fn();
        const stopped = new ToolsTreeProvider(() => undefined, list);
        await stopped.refresh();
        expect(stopped.getChildren()).toEqual([]);
        expect(list).not.toHaveBeenCalled();
        const failing = provider(async () => {
            throw new Error('connection closed');
        });
        await failing.refresh();
        const [node] = failing.getChildren();
        expect(failing.getTreeItem(node).label).toBe('tools/list failed: connection closed');
        expect(icon(node)).toBe('error');
    });

    test('a slow refresh overtaken by a newer one is dropped', async () => {
        let release: () => void = () => undefined;
        const slow = new Promise<void>((resolve) => (release = resolve));
        let calls = 0;
        const tree = provider(async () => {
            calls += 1;
            if (calls === 1) {
                await slow;
                return LISTING;
            }
            return { tools: [COUNTER], failed: [] };
        });
        const first = tree.refresh();
        await tree.refresh();
        release();
        await first;
        expect(tree.getChildren().map((n) => tree.getTreeItem(n).label)).toEqual(['counter']);
    });
});
