"""The gateway appliance: what runs in the gateway container (and only that is
mounted into it). Entry point: ``python3 -m snitch.gateway``."""
