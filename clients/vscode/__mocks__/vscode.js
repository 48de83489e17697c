// The `vscode` module in unit tests: jest-mock-vscode's mock, plus the few APIs it leaves out
// that the extension touches.
const vscode = require('jest-mock-vscode').createVSCodeMock(jest);

vscode.QuickPickItemKind = { Separator: -1, Default: 0 };
vscode.extensions = { getExtension: jest.fn(() => undefined), all: [] };
vscode.env = { appName: 'Visual Studio Code (mock)', language: 'en', machineId: 'test', sessionId: 'test' };

// The Chat API (final in 1.90) and a CancellationTokenSource, which jest-mock-vscode leaves out;
// `lm` without registerMcpServerDefinitionProvider, as in editors before 1.101 (tests add it).
vscode.chat = { createChatParticipant: jest.fn((id, handler) => ({ id, requestHandler: handler, dispose: jest.fn() })) };
vscode.lm = {};
vscode.CancellationTokenSource = class CancellationTokenSource {
    constructor() {
        const listeners = [];
        this.token = {
            isCancellationRequested: false,
            onCancellationRequested: (listener) => {
                listeners.push(listener);
                return { dispose: () => listeners.splice(listeners.indexOf(listener) >>> 0, 1) };
            },
        };
        this.cancel = () => {
            if (!this.token.isCancellationRequested) {
                this.token.isCancellationRequested = true;
                [...listeners].forEach((listener) => listener());
            }
        };
        this.dispose = () => undefined;
    }
};

module.exports = vscode;
