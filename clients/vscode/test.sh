#!/usr/bin/env bash
# Builds, packages and tests the VS Code extension; installs whatever it needs first.
#
#   1. unit tests of the extension with `vscode` mocked (jest + jest-mock-vscode)
#   2. the extension's protocol layer against the real daemon over stdio (node --test)
#   3. the packaged .vsix in a real editor: code-server driven by headless Chromium (node --test)
#
# Needs the repository's daemon (.venv and build/tools, from `make components`), Node.js 20 and
# npm; installs Debian's chromium, libkrb5-dev and ripgrep when missing, the npm packages from
# package-lock.json, and code-server into a cache outside the work tree (reused across runs).
# Artefacts (screenshots, logs) go to clients/vscode/test-results/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CODE_SERVER_VERSION=4.100.3
CODE_SERVER_HOME="${LLAMA_AGENT_CODE_SERVER_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/llama-agent-vscode/code-server-$CODE_SERVER_VERSION}"
CODE_SERVER="$CODE_SERVER_HOME/node_modules/.bin/code-server"
# @vscode/ripgrep (a code-server dependency) downloads rg from outside the registry unless its
# cache already holds this tarball; it is filled from Debian's ripgrep instead.
RIPGREP_CACHE="${TMPDIR:-/tmp}/vscode-ripgrep-cache-1.15.11"
RIPGREP_TARBALL="ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz"

export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

STAGE_START=0
stage() {
    if [ "$STAGE_START" != 0 ]; then
        echo "==> ($(($(date +%s) - STAGE_START)) s)"
    fi
    STAGE_START=$(date +%s)
    echo "==> $*"
}

cd "$HERE"

stage "prerequisites"
if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    echo "Node.js 20 or newer is needed (code-server $CODE_SERVER_VERSION runs on Node 20)" >&2
    exit 1
fi
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
dpkg -s libkrb5-dev >/dev/null 2>&1 || missing+=(libkrb5-dev)
command -v rg >/dev/null || missing+=(ripgrep)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -x "$REPO/.venv/bin/llama-agent" ] || [ ! -f "$REPO/build/tools/echo.wasm" ]; then
    make -C "$REPO" components
fi

stage "npm ci"
lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat node_modules/.installed-from 2>/dev/null)" != "$lock_hash" ]; then
    npm ci --no-audit --no-fund --loglevel=error </dev/null
    echo "$lock_hash" >node_modules/.installed-from
else
    echo "node_modules matches package-lock.json"
fi

stage "code-server $CODE_SERVER_VERSION"
if [ "$(cat "$CODE_SERVER_HOME/.installed" 2>/dev/null)" != "$CODE_SERVER_VERSION" ] || [ ! -x "$CODE_SERVER" ]; then
    if [ ! -s "$RIPGREP_CACHE/$RIPGREP_TARBALL" ]; then
        mkdir -p "$RIPGREP_CACHE"
        rg_dir="$(mktemp -d)"
        cp "$(command -v rg)" "$rg_dir/rg"
        tar -C "$rg_dir" -czf "$RIPGREP_CACHE/$RIPGREP_TARBALL" rg
        rm -rf "$rg_dir"
    fi
    rm -rf "$CODE_SERVER_HOME"
    mkdir -p "$CODE_SERVER_HOME"
    echo '{"private": true}' >"$CODE_SERVER_HOME/package.json"
    # code-server's postinstall runs npm install for its bundled VS Code (native modules:
    # kerberos, node-pty...): npm 11 blocks dependency install scripts unless allowed;
    # node-pty runs `npx node-gyp` (yes) and, as root, needs unsafe_perm.
    unsafe_perm=false
    [ "$(id -u)" = 0 ] && unsafe_perm=true
    (cd "$CODE_SERVER_HOME" &&
        npm_config_yes=true npm_config_unsafe_perm=$unsafe_perm npm_config_dangerously_allow_all_scripts=true \
            npm install --no-audit --no-fund --omit=dev --loglevel=error "code-server@$CODE_SERVER_VERSION" </dev/null)
    echo "$CODE_SERVER_VERSION" >"$CODE_SERVER_HOME/.installed"
fi
# (its own config dir: code-server writes a default config.yaml on any start)
XDG_CONFIG_HOME="$HERE/.code-server/xdg-config" "$CODE_SERVER" --version | head -1

stage "build and package (npm run package)"
npm run --silent package </dev/null
ls -l llama-agent.vsix

stage "unit tests (jest)"
node_modules/.bin/jest --ci </dev/null

stage "protocol tests against the daemon, then the .vsix in code-server (node --test)"
export CODE_SERVER CHROMIUM=/usr/bin/chromium LLAMA_AGENT_REPO="$REPO" VSIX="$HERE/llama-agent.vsix"
node --test --test-reporter=spec --test-concurrency=1 out/test/daemon/protocol.test.js out/test/daemon/grants.test.js \
    out/test/editor/vsix.test.js out/test/editor/grants.test.js out/test/editor/chatPanel.test.js </dev/null
