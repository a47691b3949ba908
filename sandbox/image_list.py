"""What ``coderun images list`` shows: coderun's images, their size and age, and
whether each is *current* (built from the inputs in ``images/`` as they are now)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import docker

from sandbox import images


@dataclass(frozen=True)
class ImageRow:
    name: str
    tag: str  # "" when no image of that name is built
    size: int  # bytes (shared layers counted in each image)
    created: datetime | None
    current: bool
    added: int = 0  # bytes over what it is built on (the base, or its parent image)

    def age(self, now: datetime) -> str:
        if self.created is None:
            return "-"
        seconds = max(0, int((now - self.created).total_seconds()))
        for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= length:
                return f"{seconds // length}{unit}"
        return f"{seconds}s"


def _created(text: str) -> datetime | None:
    try:  # Docker's RFC 3339 with nanoseconds: keep the seconds
        return datetime.fromisoformat(text[:19]).replace(tzinfo=UTC)
    except ValueError:
        return None


def list_images(client: docker.DockerClient, show_all: bool = False) -> list[ImageRow]:
    """One row per built image of coderun's (newest first within a name), and a row with
    no tag for each of coderun's images not built yet. ``show_all=False`` keeps only the
    newest of each name."""
    base = images.present_base(client)
    base_obj = images._exists(client, base) if base else None
    current = (
        {name: images.image_tag(name, base_obj.id) for name in images.ALL_NAMES}
        if base_obj is not None
        else {}
    )
    sizes: dict[str, int] = {}  # name -> size of its current image (parents come first)
    rows: list[ImageRow] = []
    for name in images.ALL_NAMES:
        parent = images.PARENTS.get(name)
        base_size = int(base_obj.attrs.get("Size", 0)) if base_obj is not None else 0
        under = sizes.get(parent, 0) if parent else base_size
        found = client.images.list(name=f"coderun-{name}", filters={"label": images.LABEL})
        tagged = []
        for img in found:
            for ref in img.tags:
                if ref.startswith(f"coderun-{name}:") and not ref.endswith(":latest"):
                    size = int(img.attrs.get("Size", 0))
                    created = _created(str(img.attrs.get("Created", "")))
                    is_current = ref == current.get(name)
                    if is_current:
                        sizes[name] = size
                    tagged.append(ImageRow(name, ref, size, created, is_current,
                                           max(0, size - under) if under else 0))  # fmt: skip
        tagged.sort(key=lambda r: (r.current, r.created or datetime.min.replace(tzinfo=UTC)),
                    reverse=True)  # fmt: skip
        if not tagged:
            rows.append(ImageRow(name, "", 0, None, False))
        rows.extend(tagged if show_all else tagged[:1])
    return rows


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "kB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
