"""The LSP face: JSON-RPC with Content-Length framing and the LSP lifecycle, on pygls."""
