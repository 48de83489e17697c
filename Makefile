# The two entry points (see README): `make run` and `make test`. Everything else is a step of theirs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The MCP Inspector's CLI, an outside MCP client for the tests (npm, from its lockfile).
INSPECTOR := tests/mcp_inspector/node_modules/.installed
# Marks the prompt states of the bundled tools kept in the cache (`llama-agent prepare`).
PROMPT_STATES := build/.prompt-states
PROMPT ?= Please echo back 'Something to echo'

.PHONY: run test bench eval setup components lint clean emacs haproxy load

run: components $(PROMPT_STATES)
	$(BIN)/llama-agent run "$(PROMPT)"

# The prompt starts of runs with the bundled tools, evaluated once into the cache (the router's
# few-shot prefix, each tool's instructions and examples): the first run is then as quick as later
# ones. Again when the tools are rebuilt.
$(PROMPT_STATES): $(INSTALLED) $(wildcard build/tools/*.wasm) | components
	$(BIN)/llama-agent prepare
	touch $@

test: components lint $(INSPECTOR) emacs haproxy
	$(BIN)/pytest
	bash clients/vscode/test.sh

# Writes bench/RESULTS.md and bench/results.png (about 10 minutes).
bench: components
	$(BIN)/python -m bench.run

# 2 replicas of `serve --listen` behind HAProxy (deploy/haproxy.cfg), llama_cpp.server with the
# embedded model, Locust driving LSP sessions at 1, 10, 50 and 200 at once, then faults (kill -9,
# rolling restart, model server restart); writes bench/load/RESULTS.md, results.json, latency.png
# (about 15 minutes). Not part of `make test`. PIN=0: replicas not pinned to a core each; SOAK=600: a
# 10-minute soak more; LOAD_SECONDS, LOAD_LEVELS=1,10,50: shorter (bench/load/run.py lists them).
LOAD_INSTALLED := $(VENV)/.load-installed
PIN ?= 1
SOAK ?= 0
load: components haproxy $(LOAD_INSTALLED)
	PIN=$(PIN) SOAK=$(SOAK) $(BIN)/python -m bench.load

$(LOAD_INSTALLED): $(INSTALLED) pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ".[load]"
	touch $@

# Measures the agent's quality on evals/tasks.toml (tuning and held-out tasks), evals/tasks-fresh.toml
# (the fresh held-out set) and the multi-turn evals/conversations.toml; writes evals/RESULTS.md and evals/results.json (about 25 minutes on 2 cores). Not part of `make test`. Other model: make eval EVAL_ARGS="--model /path/to.gguf"
# Both backends: in-process, then llama_cpp.server on loopback with the same model (its report:
# evals/RESULTS-openai.md; about 20 minutes more). One backend: make eval EVAL_BACKENDS=llama
EVAL_BACKENDS ?= llama openai
eval: components
	for backend in $(EVAL_BACKENDS); do $(BIN)/python -m evals.run --backend $$backend $(EVAL_ARGS) || exit 1; done

setup: $(INSTALLED)

# llama-cpp-python compiles llama.cpp from source (pip keeps the wheel it builds, so only once a
# machine). Only the libraries its Python package loads: not the multimodal one (LLAVA_BUILD) nor
# llama.cpp's "common" one (see build-support/llama-cpp). On 2 cores that takes 3 min 49 s instead
# of about 12 min 30 s. CMAKE_ARGS from the environment (say -DGGML_CUDA=on) come after these.
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF \
	-DCMAKE_PROJECT_llama.cpp_INCLUDE=$(CURDIR)/build-support/llama-cpp/only-the-library.cmake

# Pinned direct dependencies in pyproject.toml, every transitive one in constraints.txt. The extras
# installed: deploy/Dockerfile's image takes only `build` (make components EXTRAS=build).
EXTRAS ?= build,test,bench
$(INSTALLED): pyproject.toml constraints.txt build-support/llama-cpp/only-the-library.cmake
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS) $$CMAKE_ARGS" \
	  $(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ".[$(EXTRAS)]"
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

# HAProxy for the check of deploy/haproxy.cfg (haproxy -c) and for `make load`: Debian's haproxy,
# when there is none and apt is at hand (as emacs above). It goes in /usr/sbin, off a user's PATH.
haproxy:
	@command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || ! command -v apt-get >/dev/null || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y -q --no-install-recommends haproxy >/dev/null \
	  || { $$sudo apt-get update -q >/dev/null && $$sudo apt-get install -y -q --no-install-recommends haproxy >/dev/null; }; }

components: setup
	$(BIN)/llama-agent tools build

lint: setup
	$(BIN)/ruff check daemon tests bench evals components
	$(BIN)/ruff format --check daemon tests bench evals components
	$(BIN)/mypy

clean:
	rm -rf build $(VENV) tests/mcp_inspector/node_modules
