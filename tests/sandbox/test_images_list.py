"""Runtimes and images: names, parents, tags, and how `coderun images list` shows them
(no Docker needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sandbox import images
from sandbox.image_list import ImageRow, human_size


def test_every_runtime_has_an_image_folder() -> None:
    for runtime, name in images.RUNTIMES.items():
        assert (images.image_dir(name) / "Dockerfile").is_file(), runtime
    for name in images.ALL_NAMES:
        assert (images.image_dir(name) / "Dockerfile").is_file(), name


def test_parents_come_first_and_once() -> None:
    assert images.with_parents(("sandbox-rails",)) == ("sandbox-ruby", "sandbox-rails")
    assert images.with_parents(("sandbox-ruby", "sandbox-rails", "registry")) == (
        "sandbox-ruby",
        "sandbox-rails",
        "registry",
    )


def test_unknown_image_is_refused() -> None:
    with pytest.raises(images.ImageError, match="unknown image 'sandbox-cobol'"):
        images.with_parents(("sandbox-cobol",))


def test_runtime_names_map_to_images() -> None:
    assert images.image_name("node") == "sandbox-node"
    assert images.image_name("rails") == "sandbox-rails"
    assert images.image_name("gateway") == "gateway"


def test_a_child_tag_changes_with_its_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    before = images.image_tag("sandbox-rails", "sha256:base")
    assert images.image_tag("sandbox-rails", "sha256:other") != before
    real = images._hash_dir

    def changed(path: object, seed: str) -> str:
        # the parent's inputs change: its tag does, and so does the child's
        suffix = "+changed" if str(path).endswith("sandbox-ruby") else ""
        return real(path, seed + suffix)  # type: ignore[arg-type]

    monkeypatch.setattr(images, "_hash_dir", changed)
    assert images.image_tag("sandbox-rails", "sha256:base") != before


def test_the_default_build_leaves_the_new_runtimes_out() -> None:
    # a run builds only what it uses: node, go, ruby and rails are built on first use
    assert not {"sandbox-node", "sandbox-go", "sandbox-ruby", "sandbox-rails"} & set(images.NAMES)


def test_age_and_size_are_short() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    row = ImageRow("sandbox-node", "coderun-sandbox-node:abc", 0, now - timedelta(hours=5), True)
    assert row.age(now) == "5h"
    assert ImageRow("x", "", 0, None, False).age(now) == "-"
    assert human_size(412_345_678) == "412.3 MB"
    assert human_size(999) == "999 B"
