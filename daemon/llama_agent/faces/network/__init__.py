"""The network face: the daemon as a service of many tenants on one port (`serve --listen`).

`/lsp` carries the LSP face over WebSocket (one JSON-RPC message per text frame, one session per
connection), `/mcp` the MCP face over MCP's Streamable HTTP (one session per MCP session), beside
`/healthz`, `/readyz`, `/metrics` and, with JWT, `/.well-known/oauth-protected-resource`. Every
request to `/lsp` and `/mcp` names its tenant with a bearer token (services/tenants/auth.py); a
tenant sees only its own core (tools, grants, workers) and its sessions only their workspace
inside the tenant's root. settings.py: what the command line says; run.py: the server and its
stop; app.py: the routes; reloading.py: the tenants file reloaded while it runs.
"""
