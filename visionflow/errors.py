"""Errors a visionflow user can act on, each with the exit code the CLI returns for it."""

from __future__ import annotations


class VisionflowError(Exception):
    """Base class: the message says what was wrong, where, and what to do about it."""

    exit_code = 1  # Process exit status the CLI uses when this error ends a command.


class InvalidSettingError(VisionflowError, ValueError):
    """A setting's value is not one visionflow can use (the CLI's exit status for an invalid option).

    It is a ValueError for Python callers."""

    exit_code = 2


class BadInputError(VisionflowError):
    """The input a user pointed visionflow at cannot be used (missing, empty, wrong layout)."""

    exit_code = 4


class ContractBreachError(VisionflowError):
    """A data contract's hard expectation failed, so the run stopped before using the data."""

    exit_code = 3


class BusyError(VisionflowError):
    """Another run holds what this run needs (a drop being scored); trying again later works."""

    exit_code = 5


class DamagedStateError(VisionflowError):
    """A file visionflow keeps (the ledger, the champion pointer, a model) is damaged: the message
    names it and says how to recover; nothing is deleted to get past it."""

    exit_code = 6


class NoSpaceError(VisionflowError):
    """The disk visionflow writes to is full; what was committed before stays, and the same command
    finishes the work once space is freed."""

    exit_code = 7


class GateRefusedError(VisionflowError):
    """The approval gate kept a model from becoming champion; the message has the gate's reason,
    and `--force --reason TEXT` promotes it anyway."""

    exit_code = 8


class UnreachableError(VisionflowError):
    """A database visionflow shares with other runs (a PostgreSQL scoring ledger) cannot be reached:
    the message names it (password hidden) and what failed; the same command finishes the work
    once it answers, keeping what was committed before."""

    exit_code = 9


def first_validation_problem(error: ValueError) -> str:
    """The first problem a pydantic ValidationError names, as "where.it.is: what is wrong" (else the error's text)."""
    errors = getattr(error, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"
    return str(error)
