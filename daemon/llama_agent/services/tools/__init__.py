"""The tool registry (load, reconcile, invoke) and the watcher that keeps it current."""
