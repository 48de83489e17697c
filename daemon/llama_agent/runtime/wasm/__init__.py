"""The Wasm host: components compiled (and cached), run in killable worker processes."""
