"""llama-agent: a JSON-RPC daemon that hosts a llama.cpp model and sandboxed Wasm tools.

Layers, imported one way only: ``protocol`` (pygls handlers) → ``services``
(tool registry, agent loop) → ``runtime`` (wasmtime host, model backend).
"""

__version__ = "0.1.0"
