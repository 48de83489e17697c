"""Tool metadata, argument schemas, policies and limits, and the grants file."""
