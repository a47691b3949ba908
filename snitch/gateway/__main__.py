"""``python3 -m snitch.gateway``: the gateway container's entry point."""

from snitch.gateway.main import main

main()
