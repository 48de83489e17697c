"""Helpers that know no feature of the daemon: any layer may use them."""
