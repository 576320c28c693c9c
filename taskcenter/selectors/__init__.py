"""Selectors: read-only queries used by pages, commands and the API."""
