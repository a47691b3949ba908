"""The Docker fixtures of the end-to-end tests, for the approver tests that need a real
sandbox (the others plant their data by hand and need none)."""

from tests.e2e.conftest import client, internet, tags

__all__ = ["client", "internet", "tags"]
