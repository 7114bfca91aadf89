"""Shared test helpers (fixtures' building blocks, servers, browsers, the import graph).

tests/ is on sys.path (pytest puts the root conftest's folder there), so tests import these as
`support.<module>`.
"""
