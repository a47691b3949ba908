"""Host-side review of what sessions did: log queries, pcap, rule-set exports, and the
control API's client (the CLI and the dashboard talk to gateways through it).
Never mounted into the gateway."""
