"""The gateway appliance: queue, DNS, policy, store, log and control API.

Nothing in this package may import docker or textual (tests/test_layering.py checks it).
"""
