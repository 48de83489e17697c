"""Protocol layer: the pygls server, its JSON-RPC methods and their wire formats."""
