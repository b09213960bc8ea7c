"""Who holds a content's reservation in the scoring ledger, and taking over those of runs that ended.

A reservation names its owner as host:pid:token. A run on this host counts as gone as soon as its
process is, or, in this process, as soon as it has released its reservations (even where that
failed, on a full disk: a later run in the same process, such as the next drop of an inbox, takes
them over instead of waiting for them); a run on another host, once its reservation is older than
RESERVATION_STALE_SECONDS.
"""

from __future__ import annotations

import os
import socket
import uuid

from sqlalchemy import Connection, select, update

from visionflow.ledger.store import reservations

# A reservation held by a run on another host counts as abandoned after this long, in seconds;
# on this host, a reservation counts as abandoned as soon as its process is gone.
RESERVATION_STALE_SECONDS = 3600.0

# The owners this process has named and not yet ended.
_LIVE_OWNERS: set[str] = set()


def reservation_owner() -> str:
    """A name for this run's reservations: host, process id and a token of its own."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    _LIVE_OWNERS.add(owner)
    return owner


def end_owner(owner: str) -> None:
    """Mark a run of this process as ended: what it still holds counts as abandoned."""
    _LIVE_OWNERS.discard(owner)


def owner_gone(owner: str, reserved_at: float, now: float) -> bool:
    """True when the run that holds a reservation has ended: it was ended in this process, or its
    process is gone (this host), or the reservation is older than RESERVATION_STALE_SECONDS (another host)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return owner not in _LIVE_OWNERS
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return now - reserved_at > RESERVATION_STALE_SECONDS


def take_over(
    connection: Connection, contents: list[str], model_version: str, holder: str, owner: str, now: float
) -> set[str]:
    """Move to owner the reservations of a run that is gone; return those owner now holds.

    The UPDATE names the old holder, so a reservation another run took over first, or its holder
    released meanwhile, stays as it is: what the row count does not account for is looked up.
    """
    columns = reservations.c
    matching = (columns.model_version == model_version, columns.sha256.in_(contents))
    moved = connection.execute(
        update(reservations).where(*matching, columns.owner == holder).values(owner=owner, reserved_at=now)
    )
    if moved.rowcount == len(contents):
        return set(contents)
    return {sha256 for (sha256,) in connection.execute(select(columns.sha256).where(*matching, columns.owner == owner))}
