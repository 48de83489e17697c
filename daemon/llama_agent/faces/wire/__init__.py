"""What every face shares on the wire: JSON-RPC's rules and codes, strict JSON, bounded lines,
the daemon's own methods' params and results."""
