"""Finding the image a label is about: a content visionflow has seen, read from where it was seen.

A label names its image by content (sha256) or by a file path. Labels are only taken for contents
visionflow has scored (they are in a drop's outputs) or put in a review set, and only while a file
with those bytes can still be read: the labels store keeps a copy of the bytes, so a model trained
later learns from the very image that was labelled, even after the drop is gone.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from visionflow.home import HomeLayout
from visionflow.images.imaging import ImageRejected, ImageSpec, decode_image
from visionflow.labels.review_sets import review_sets
from visionflow.ledger.scored_rows import last_scored_folder, scored_drops, scored_file_index

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")

# Largest file a label's image may be, in bytes; a larger one is not an image visionflow scored.
MAX_IMAGE_BYTES = 64 * 1024 * 1024


class LabelRejected(ValueError):
    """A label that cannot be taken; the message is the reason, in words a person can act on."""


class ContentFinder:
    """Where the contents visionflow has seen can be read: review sets first, then scored drops.

    Each index is built on first use, once per import, and the drops' only for a content no review
    set holds: answers from the review flow never read every drop's outputs.
    """

    def __init__(self, layout: HomeLayout) -> None:
        self._layout = layout
        self._reviewed: dict[str, list[Path]] | None = None
        self._scored: dict[str, list[Path]] | None = None

    def seen(self, sha256: str) -> bool:
        """Whether visionflow scored this content or put it in a review set."""
        return bool(self._places(sha256))

    def read(self, sha256: str | None, path: str | None, base: Path | None = None) -> tuple[str, bytes]:
        """The (sha256, bytes) of the content a label names. Raises LabelRejected with the reason."""
        if sha256 is not None and not SHA256_PATTERN.match(sha256):
            raise LabelRejected(f"{sha256!r} is not a sha256 (64 lower-case hex digits)")
        if path:
            return self._read_path(sha256, Path(path) if base is None else Path(base) / path)
        if sha256 is None:
            raise LabelRejected("names no image: give its sha256 or its path")
        candidates = self._places(sha256)
        if not candidates:
            raise LabelRejected(f"content {sha256[:12]}… was never scored by visionflow; score its drop first")
        for candidate in candidates:
            data = _read_bytes(candidate)
            if data is not None and hashlib.sha256(data).hexdigest() == sha256:
                return sha256, data
        raise LabelRejected(
            f"content {sha256[:12]}… was seen at {candidates[0]}, which is gone or changed; "
            "give the file's current path in a `path` column"
        )

    def _read_path(self, sha256: str | None, path: Path) -> tuple[str, bytes]:
        data = _read_bytes(path)
        if data is None:
            raise LabelRejected(f"{path} cannot be read (missing, not a file, or over {MAX_IMAGE_BYTES} bytes)")
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and digest != sha256:
            raise LabelRejected(f"{path} holds content {digest[:12]}…, not the {sha256[:12]}… the label names")
        if not self.seen(digest):
            raise LabelRejected(f"{path} was never scored by visionflow; score its drop first")
        return digest, data

    def _places(self, sha256: str) -> list[Path]:
        """Where the content was seen: in review sets, else in scored drops."""
        if self._reviewed is None:
            self._reviewed = {}
            for review in review_sets(self._layout.reviews):
                for item in review.items:
                    self._reviewed.setdefault(item.sha256, []).append(Path(item.path))
        if sha256 in self._reviewed:
            return self._reviewed[sha256]
        if self._scored is None:
            self._scored = {}
            for outputs in scored_drops(self._layout.predictions):
                folder = last_scored_folder(outputs)
                for digest, relative in scored_file_index(outputs).items():
                    self._scored.setdefault(digest, []).append(folder / relative if folder else Path(relative))
        return self._scored.get(sha256, [])


def check_decodes(data: bytes, spec: ImageSpec) -> None:
    """Raise LabelRejected when the bytes do not decode into the model's input as training would."""
    try:
        decode_image(data, spec)
    except ImageRejected as rejected:
        raise LabelRejected(f"the image does not decode: {rejected}") from None


def _read_bytes(path: Path) -> bytes | None:
    """A regular file's bytes, or None when it is missing, not a regular file or too large."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_IMAGE_BYTES:
            return None
        return path.read_bytes()
    except OSError:
        return None
