"""The champion pointer format: models/champion.json, which names the model scoring uses.

visionflow/models/champion.py moves the pointer (under its lock, recording each move in the
champion history); the registry resolves "champion" through it. Both read and write it only
here. It is written to a temporary file renamed over the old one, so readers see the old
champion or the new one, never a half-written pointer. A pointer written by hand may hold the
version alone ({"version": "v0001"}), as the damaged-pointer message suggests; that is enough.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from visionflow.atomic import write_json_atomically
from visionflow.errors import DamagedStateError

CHAMPION_POINTER = "champion.json"


class ChampionPointer(BaseModel):
    """champion.json: which registered version is the champion, and since when."""

    version: str  # The champion's registry version, e.g. "v0003".
    promoted_at: str | None = None  # When it became champion, ISO 8601 in UTC; None in a pointer written by hand.


def read_champion(models_root: Path) -> ChampionPointer | None:
    """The champion pointer, or None when no model was promoted yet.

    Raises DamagedStateError, naming the file and the registered versions, when it is not a JSON
    object naming a version.
    """
    path = Path(models_root) / CHAMPION_POINTER
    if not path.exists():
        return None
    try:
        return ChampionPointer.model_validate(json.loads(path.read_text()))
    except (ValueError, UnicodeDecodeError, ValidationError):
        pass
    versions = ", ".join(sorted(folder.name for folder in Path(models_root).glob("v[0-9]*") if folder.is_dir()))
    raise DamagedStateError(
        f"the champion pointer {path} is damaged (not a JSON object naming a version); write the champion back "
        f'into it, e.g. echo \'{{"version": "v0001"}}\' > {path} (registered: {versions or "none"}), or train again'
    )


def write_champion(models_root: Path, version: str) -> ChampionPointer:
    """Point champion.json at version, stamped with the current time; the caller holds the champion lock."""
    pointer = ChampionPointer(version=version, promoted_at=datetime.now(UTC).isoformat(timespec="seconds"))
    write_json_atomically(Path(models_root) / CHAMPION_POINTER, pointer.model_dump(mode="json"))
    return pointer


def champion_dir(models_root: Path) -> Path | None:
    """The champion's registry folder, or None when no model was promoted yet."""
    pointer = read_champion(models_root)
    return Path(models_root) / pointer.version if pointer else None
