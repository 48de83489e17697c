// The palette commands: Run Agent…, List Tools, Invoke Tool….

import { OutputChannel, ProgressLocation, QuickPickItem, QuickPickItemKind } from 'vscode';
import { readAgentSettings } from './agentSettings';
import {
    showErrorMessage,
    showInformationMessage,
    showInputBox,
    showQuickPick,
    withProgress,
} from './common/vscodeapi';
import { failureRow, toolRow } from './format';
import { buildArguments, paramPrompt, paramSpecs, parseParam, ParseResult, ParamSpec, validateParam } from './params';
import { answerMessage, notificationMessage, RunFormatter } from './progress';
import {
    AgentConnection,
    AgentRunResult,
    errorMessage,
    invokeTool,
    isCancelled,
    listTools,
    resultText,
    runAgent,
    ToolInfo,
    ToolsInvokeResult,
    ToolsListResult,
} from './protocol';
import type { ToolsNode } from './toolsView';

/** The agent's commands (the palette's and the tools view's). */
export const Commands = {
    runAgent: 'llamaAgent.runAgent',
    listTools: 'llamaAgent.listTools',
    invokeTool: 'llamaAgent.invokeTool',
    refreshTools: 'llamaAgent.refreshTools',
} as const;

/** Where each run's progress and answer are written. */
export const RUNS_CHANNEL = 'Llama Agent: Runs';

export interface CommandContext {
    /** The running daemon, started if needed; undefined when it cannot start (the user was told). */
    connect(): Promise<AgentConnection | undefined>;
    /** The "Llama Agent: Runs" channel. */
    runs: OutputChannel;
    showLog(): void;
}

export const EXAMPLE_PROMPT = "Please echo back 'Something to echo'";

interface ToolPick extends QuickPickItem {
    tool?: ToolInfo;
    failurePath?: string;
}

/** The List Tools rows: every tool, then a separator and every file that failed to load. */
export function toolPickItems(result: ToolsListResult, withFailures: boolean): ToolPick[] {
    const items: ToolPick[] = result.tools.map((tool) => ({ ...toolRow(tool), tool }));
    if (withFailures && result.failed.length > 0) {
        items.push({ label: 'Failed to load', kind: QuickPickItemKind.Separator });
        items.push(...result.failed.map((failure) => ({ ...failureRow(failure), failurePath: failure.path })));
    }
    return items;
}

export async function runAgentCommand(ctx: CommandContext, promptArg?: string): Promise<AgentRunResult | undefined> {
    const connection = await ctx.connect();
    if (!connection) {
        return undefined;
    }
    const prompt =
        promptArg ??
        (await showInputBox({
            title: 'Llama Agent: Run Agent',
            prompt: 'What should the agent do?',
            placeHolder: EXAMPLE_PROMPT,
            ignoreFocusOut: true,
            validateInput: (text) => (text.trim() ? undefined : 'Enter a prompt'),
        }));
    if (!prompt || !prompt.trim()) {
        return undefined;
    }
    const { maxSteps } = readAgentSettings();
    const formatter = new RunFormatter();
    ctx.runs.show(true);
    try {
        const result = await withProgress(
            { location: ProgressLocation.Notification, title: 'Llama Agent', cancellable: true },
            (progress, token) => {
                progress.report({ message: 'running…' });
                return runAgent(
                    connection,
                    { prompt, maxSteps },
                    (value) => {
                        ctx.runs.append(formatter.format(value));
                        const message = notificationMessage(value);
                        if (message) {
                            progress.report({ message });
                        }
                    },
                    token,
                );
            },
        );
        ctx.runs.append(formatter.formatResult(result));
        void showInformationMessage(answerMessage(result));
        return result;
    } catch (error) {
        if (isCancelled(error)) {
            ctx.runs.appendLine('(cancelled)');
            void showInformationMessage('Llama Agent: the run was cancelled.');
        } else {
            ctx.runs.appendLine(`Error: ${errorMessage(error)}`);
            void showErrorMessage(`Llama Agent: the run failed: ${errorMessage(error)}`);
        }
        return undefined;
    }
}

export async function listToolsCommand(ctx: CommandContext): Promise<void> {
    const connection = await ctx.connect();
    if (!connection) {
        return;
    }
    let result: ToolsListResult;
    try {
        result = await listTools(connection);
    } catch (error) {
        void showErrorMessage(`Llama Agent: tools/list failed: ${errorMessage(error)}`);
        return;
    }
    const loaded = `${result.tools.length} tool${result.tools.length === 1 ? '' : 's'}`;
    const failed = result.failed.length ? `, ${result.failed.length} failed to load` : '';
    const pick = await showQuickPick(toolPickItems(result, true), {
        title: `Llama Agent: ${loaded}${failed}`,
        placeHolder: 'Pick a tool to invoke it',
        matchOnDescription: true,
        matchOnDetail: true,
    });
    if (pick?.tool) {
        await invokeToolCommand(ctx, pick.tool.name);
    } else if (pick?.failurePath) {
        ctx.showLog();
    }
}

/** Asks for each parameter in turn; undefined when the user gives up. */
export async function askArguments(tool: ToolInfo): Promise<{ spec: ParamSpec; result: ParseResult }[] | undefined> {
    const specs = paramSpecs(tool.inputSchema);
    const values: { spec: ParamSpec; result: ParseResult }[] = [];
    for (const [index, spec] of specs.entries()) {
        const { prompt, placeHolder } = paramPrompt(spec);
        const text = await showInputBox({
            title: `Llama Agent: ${tool.name} (${index + 1}/${specs.length})`,
            prompt,
            placeHolder,
            ignoreFocusOut: true,
            validateInput: (value) => validateParam(spec, value),
        });
        if (text === undefined) {
            return undefined;
        }
        const result = parseParam(spec, text);
        if (!result.ok) {
            void showErrorMessage(`Llama Agent: ${result.error}`);
            return undefined;
        }
        values.push({ spec, result });
    }
    return values;
}

export async function invokeToolCommand(
    ctx: CommandContext,
    target?: string | ToolsNode,
): Promise<ToolsInvokeResult | undefined> {
    const connection = await ctx.connect();
    if (!connection) {
        return undefined;
    }
    let tools: ToolInfo[];
    try {
        tools = (await listTools(connection)).tools;
    } catch (error) {
        void showErrorMessage(`Llama Agent: tools/list failed: ${errorMessage(error)}`);
        return undefined;
    }
    let name = typeof target === 'string' ? target : target?.kind === 'tool' ? target.tool.name : undefined;
    if (name === undefined) {
        if (tools.length === 0) {
            void showErrorMessage('Llama Agent: the daemon has no tools. Check llamaAgent.toolsDirs and the log.');
            return undefined;
        }
        const pick = await showQuickPick(toolPickItems({ tools, failed: [] }, false), {
            title: 'Llama Agent: Invoke Tool',
            placeHolder: 'Pick the tool to invoke',
            matchOnDescription: true,
            matchOnDetail: true,
        });
        if (!pick?.tool) {
            return undefined;
        }
        name = pick.tool.name;
    }
    const tool = tools.find((t) => t.name === name);
    if (!tool) {
        void showErrorMessage(`Llama Agent: no tool named "${name}" is loaded.`);
        return undefined;
    }
    const values = await askArguments(tool);
    if (!values) {
        return undefined;
    }
    const args = buildArguments(values);
    ctx.runs.appendLine(`→ ${tool.name} ${JSON.stringify(args)}`);
    try {
        const result = await invokeTool(connection, tool.name, args);
        const text = resultText(result);
        ctx.runs.appendLine(`${result.isError ? '✗' : '←'} ${text}`);
        if (result.isError) {
            void showErrorMessage(`Llama Agent: ${tool.name} failed: ${text}`);
        } else {
            void showInformationMessage(`${tool.name} returned: ${text}`);
        }
        return result;
    } catch (error) {
        ctx.runs.appendLine(`Error: ${errorMessage(error)}`);
        void showErrorMessage(`Llama Agent: tools/invoke ${tool.name}: ${errorMessage(error)}`);
        return undefined;
    }
}
