"""Tenants of a shared deployment: their configuration, authentication, quotas and fair turns."""
