"""`make load`: 2 replicas of `llama-agent serve --listen` behind HAProxy, llama-cpp-python's server
with the embedded model, and Locust driving LSP sessions over WebSockets at several levels of
concurrency and through faults (bench/load/run.py says how; RESULTS.md is what it measured)."""
