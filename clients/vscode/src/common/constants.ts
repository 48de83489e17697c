export const EXTENSION_ID = 'llama-agent.llama-agent';
/** The LanguageClient id: also the settings section, so `llamaAgent.trace.server` is the protocol trace. */
export const CLIENT_ID = 'llamaAgent';
export const CLIENT_NAME = 'Llama Agent';
export const SETTINGS_SECTION = 'llamaAgent';
export const LOG_CHANNEL = 'Llama Agent';
export const SERVER_SCRIPT = 'llama-agent';
export const PYTHON_EXTENSION_ID = 'ms-python.python';

/** The commands about the daemon itself; each feature names its own (see ../commands.ts). */
export const ServerCommands = {
    restart: 'llamaAgent.restart',
    showLog: 'llamaAgent.showLog',
} as const;
