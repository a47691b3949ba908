"""The core shared by the gateway and the host: the data model, rules and their
store, policy files, blocklists, the grammar and the neutraliser of untrusted text.
Standard library only (no Docker, Textual, mitmproxy)."""
