"""The agent evaluation suite: `make eval` (see evals/README.md). Not part of `make test`."""
