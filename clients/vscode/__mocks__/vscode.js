// The `vscode` module in unit tests: jest-mock-vscode's mock, plus the few APIs it leaves out
// that the extension touches.
const vscode = require('jest-mock-vscode').createVSCodeMock(jest);

vscode.QuickPickItemKind = { Separator: -1, Default: 0 };
vscode.extensions = { getExtension: jest.fn(() => undefined), all: [] };
vscode.env = { appName: 'Visual Studio Code (mock)', language: 'en', machineId: 'test', sessionId: 'test' };

module.exports = vscode;
