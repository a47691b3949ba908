"""The escape suite reuses the end-to-end fixtures (Docker engine, images, demo internet)."""

from tests.e2e.conftest import client, internet, run_coderun, tags, topology  # noqa: F401
