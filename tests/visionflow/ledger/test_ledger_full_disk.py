"""A full disk under a SQLite ledger: every failed write is NoSpaceError, however little is free, and
the same ledger writes again once space is freed (its connection rolled back, or opened anew).

The disk is a real one (a small tmpfs, tests/visionflow/ledger/small_disk.py) where the machine
lets a test mount it; SQLite's page limit stands in for it where it does not, and in the last test.
"""

from __future__ import annotations

import numpy as np
import pytest

from visionflow.errors import NoSpaceError
from visionflow.ledger.ledger import PredictionLedger

from tests.visionflow.ledger.small_disk import fill, log, small_disk

FULL = "the disk holding the scoring ledger .* is full .*free some space and run the same command again"


def part(index: int, rows: int) -> tuple[list[tuple[str, str, str]], list[tuple[str, np.ndarray, str]]]:
    """A part's files and new predictions: rows contents of their own, named after index."""
    sha256s = [f"{index:08d}{row:056d}" for row in range(rows)]
    files = [(f"{index}/{row}.png", sha256, "predicted") for row, sha256 in enumerate(sha256s)]
    probabilities = np.array([0.25, 0.75], dtype=np.float32)
    return files, [(sha256, probabilities, "2026-01-01T00:00:00.000000") for sha256 in sha256s]


def pragma(ledger: PredictionLedger, setting: str) -> int:
    """Run PRAGMA setting on the ledger's own connection (the page limit is the connection's); its value."""
    value = ledger._connection.exec_driver_sql(f"PRAGMA {setting}").scalar()
    ledger._connection.commit()
    return value


# Free bytes left: none (opening fails), a few pages (SQLite's shared-memory index cannot grow: "disk
# I/O error"), and enough to open and write, not to commit a part (the COMMIT fails).
@pytest.mark.parametrize("free_kib", [0, 8, 32, 160])
def test_a_full_tmpfs_fails_as_no_space_and_the_same_ledger_writes_once_space_is_freed(tmp_path, free_kib):
    with small_disk(tmp_path / "disk", 2048) as disk:
        location = disk / "ledger.sqlite"
        with PredictionLedger(location) as ledger:
            ledger.commit_part("drop", "predictions", "part-1", *part(1, 10), "v1")
        filler = fill(disk, free_kib * 1024)
        ledger = None
        try:
            with pytest.raises(NoSpaceError, match=FULL):
                ledger = PredictionLedger(location)
                ledger.commit_part("drop", "predictions", "part-2", *part(2, 1000), "v1")
            log.info("%d KiB free: the %s failed as NoSpaceError", free_kib, "commit" if ledger else "opening")
            filler.unlink()
            ledger = ledger or PredictionLedger(location)
            ledger.commit_part("drop", "predictions", "part-2", *part(2, 1000), "v1")
            ledger.reserve_part("drop", "predictions", "part-3")
            assert ledger.parts("drop", "predictions") == {"part-1", "part-2"}
            assert ledger.accepted_count("drop", "v1") == 1010
            assert len(ledger.known_probabilities([row[0] for row in part(1, 10)[1]], "v1")) == 10
        finally:
            if ledger is not None:
                ledger.close()


def test_each_write_after_a_failed_commit_on_a_full_tmpfs_is_told_as_no_space_too(tmp_path):
    with small_disk(tmp_path / "disk", 2048) as disk, PredictionLedger(disk / "ledger.sqlite") as ledger:
        filler = fill(disk, 160 * 1024)
        with pytest.raises(NoSpaceError, match=FULL):
            ledger.commit_part("drop", "predictions", "part-1", *part(1, 1000), "v1")
        with pytest.raises(NoSpaceError, match=FULL):
            ledger.reserve_contents([row[0] for row in part(2, 1000)[1]], "v1", "host:1:token")
        ledger.release_contents("host:1:token")  # Deletes nothing, writes nothing: it works on a full disk.
        assert ledger.parts("drop", "predictions") == set(), "reads work on a full disk"
        filler.unlink()
        ledger.commit_part("drop", "predictions", "part-1", *part(1, 1000), "v1")
        assert ledger.accepted_count("drop", "v1") == 1000


def test_a_write_past_sqlites_page_limit_fails_as_no_space_and_the_same_ledger_writes_once_it_is_raised(tmp_path):
    log.info("full disk made by SQLite's page limit (PRAGMA max_page_count), no file system involved")
    with PredictionLedger(tmp_path / "ledger.sqlite") as ledger:
        ledger.commit_part("drop", "predictions", "part-1", *part(1, 10), "v1")
        pages = pragma(ledger, "page_count")
        pragma(ledger, f"max_page_count = {pages + 1}")  # As good as a full disk.
        with pytest.raises(NoSpaceError, match=FULL):
            ledger.commit_part("drop", "predictions", "part-2", *part(2, 1000), "v1")
        pragma(ledger, "max_page_count = 1073741823")  # SQLite's default limit: the disk has room again.
        ledger.commit_part("drop", "predictions", "part-2", *part(2, 1000), "v1")
        assert ledger.parts("drop", "predictions") == {"part-1", "part-2"}
        assert ledger.accepted_count("drop", "v1") == 1010
