"""The decision service (``coderun serve``): one rule store and one place to decide for many
gateways. Host side (or its own pod); imports only snitch.core. docs/scale.md."""
