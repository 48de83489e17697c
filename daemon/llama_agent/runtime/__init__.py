"""Runtime layer: executes Wasm components and (later) the model. Knows nothing of JSON-RPC."""
