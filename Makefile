# The two entry points (see README): `make run` and `make test`. Everything else is a step of theirs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The MCP Inspector's CLI, an outside MCP client for the tests (npm, from its lockfile).
INSPECTOR := tests/mcp_inspector/node_modules/.installed
PROMPT ?= Please echo back 'Something to echo'

.PHONY: run test bench eval setup components lint clean emacs

run: components
	$(BIN)/llama-agent run "$(PROMPT)"

test: components lint $(INSPECTOR) emacs
	$(BIN)/pytest
	bash clients/vscode/test.sh

# Writes bench/RESULTS.md and bench/results.png (about 10 minutes).
bench: components
	$(BIN)/python -m bench.run

# Measures the agent's quality on evals/tasks.toml; writes evals/RESULTS.md and evals/results.json
# (about 10 minutes on 2 cores). Not part of `make test`. Other model: make eval EVAL_ARGS="--model /path/to.gguf"
eval: components
	$(BIN)/python -m evals.run $(EVAL_ARGS)

setup: $(INSTALLED)

# Pinned direct dependencies in pyproject.toml, every transitive one in constraints.txt.
$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ".[build,test,bench]"
	touch $@

$(INSPECTOR): tests/mcp_inspector/package-lock.json
	npm ci --prefix tests/mcp_inspector --no-audit --no-fund --loglevel=error
	touch $@

# Emacs for the Emacs client's test: Debian's emacs-nox, when there is no emacs and apt is at hand.
emacs:
	@command -v emacs >/dev/null || ! command -v apt-get >/dev/null || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y -q --no-install-recommends emacs-nox >/dev/null \
	  || { $$sudo apt-get update -q >/dev/null && $$sudo apt-get install -y -q --no-install-recommends emacs-nox >/dev/null; }; }

components: setup
	$(BIN)/llama-agent tools build

lint: setup
	$(BIN)/ruff check daemon tests bench evals components
	$(BIN)/ruff format --check daemon tests bench evals components
	$(BIN)/mypy

clean:
	rm -rf build $(VENV) tests/mcp_inspector/node_modules
