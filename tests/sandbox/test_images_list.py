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


class FakeImage:
    def __init__(self, tags: list[str], size: int, image_id: str = "sha256:img") -> None:
        self.tags, self.id = tags, image_id
        self.attrs = {"Size": size, "Created": "2026-01-01T10:00:00.123456789Z"}


class FakeImages:
    def __init__(self, found: dict[str, FakeImage]) -> None:
        self.found = found

    def get(self, ref: str) -> FakeImage:
        import docker.errors

        if ref not in self.found:
            raise docker.errors.ImageNotFound(ref)
        return self.found[ref]

    def list(self, name: str, filters: object = None) -> list[FakeImage]:
        return [img for ref, img in self.found.items() if ref.startswith(name + ":")]


class FakeClient:
    def __init__(self, found: dict[str, FakeImage]) -> None:
        self.images = FakeImages(found)


def test_list_shows_current_stale_missing_and_what_each_adds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sandbox.image_list import list_images

    monkeypatch.delenv("CODERUN_BASE_IMAGE", raising=False)
    base = images.local_base_tag()
    base_img = FakeImage([base], 100, "sha256:base")
    ruby = images.image_tag("sandbox-ruby", "sha256:base")
    rails = images.image_tag("sandbox-rails", "sha256:base")
    found = {
        base: base_img,
        ruby: FakeImage([ruby], 700),
        rails: FakeImage([rails], 850),
        "coderun-sandbox-node:0ld": FakeImage(["coderun-sandbox-node:0ld"], 900),
    }
    rows = {r.name: r for r in list_images(FakeClient(found))}  # type: ignore[arg-type]
    assert (rows["sandbox-ruby"].current, rows["sandbox-ruby"].added) == (True, 600)
    assert (rows["sandbox-rails"].current, rows["sandbox-rails"].added) == (True, 150)  # on ruby
    assert not rows["sandbox-node"].current and rows["sandbox-node"].tag.endswith(":0ld")
    assert rows["sandbox-go"].tag == "" and not rows["sandbox-go"].current  # not built
    assert rows["sandbox-ruby"].created == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
