"""Grants and consent: what a tool asks beyond the defaults, and the person's answers."""
