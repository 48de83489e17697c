/** Unit tests: the compiled TypeScript in out/test/unit, with `vscode` mocked by jest-mock-vscode. */
module.exports = {
    testEnvironment: 'node',
    roots: ['<rootDir>/out/test/unit'],
    testMatch: ['**/*.test.js'],
    moduleNameMapper: { '^vscode$': '<rootDir>/__mocks__/vscode.js' },
    clearMocks: true,
};
