export const EXTENSION_ID = 'llama-agent.llama-agent';
/** The LanguageClient id: also the settings section, so `llamaAgent.trace.server` is the protocol trace. */
export const CLIENT_ID = 'llamaAgent';
export const CLIENT_NAME = 'Llama Agent';
export const SETTINGS_SECTION = 'llamaAgent';
export const LOG_CHANNEL = 'Llama Agent';
export const RUNS_CHANNEL = 'Llama Agent: Runs';
export const TOOLS_VIEW = 'llamaAgent.tools';
export const SERVER_SCRIPT = 'llama-agent';
export const PYTHON_EXTENSION_ID = 'ms-python.python';

export const Commands = {
    runAgent: 'llamaAgent.runAgent',
    listTools: 'llamaAgent.listTools',
    invokeTool: 'llamaAgent.invokeTool',
    restart: 'llamaAgent.restart',
    showLog: 'llamaAgent.showLog',
    refreshTools: 'llamaAgent.refreshTools',
} as const;
