"""The escape suite reuses the end-to-end fixtures (Docker engine, images, demo internet);
``arena`` is the escape arena's run (arena.py), shared by the ``test_escape*.py`` modules."""

import docker
import pytest

from sandbox.internet import DemoInternet
from tests.e2e.conftest import client, internet, run_coderun, tags, topology  # noqa: F401
from tests.escape.arena import Arena
from tests.escape.arena_run import run_arena
from tests.needs import need_root


@pytest.fixture(scope="session")
def arena(
    client: docker.DockerClient,  # noqa: F811
    tags: dict[str, str],  # noqa: F811
    internet: DemoInternet,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Arena:
    """The arena runs once however many of its modules run: both sessions' hostile
    scripts to the end, every observer collected, nothing left running (the tests only
    read what it saw)."""
    need_root("the observers use packet sockets on the host's bridges")
    return run_arena(client, tags, internet, tmp_path_factory.mktemp("escape"))
