"""The `visionflow` executable: run the command, then end the process without tearing it down.

When a command returns, its work is on disk and reported: files are closed, the ledger is
committed, Prefect's logs and events are sent (common.run_flow, and again here for a command
that ran no flow to its end). What Python would still do at exit is join the worker processes
one by one while each tears its own modules down, run the atexit handlers (stop the temporary
Prefect server, flush the logs), and then tear down every module of this process. With
TensorFlow and Great Expectations loaded, the two teardowns cost a 10-image `visionflow score`
about 1.8 s of its 9 s on two cores (docs/BENCHMARKS.md) and change nothing on disk; here the
workers are stopped, the atexit handlers run, and the process ends.
"""

from __future__ import annotations

import atexit
import os
import sys

from visionflow.cli import app
from visionflow.parallel import stop_worker_pools


def main() -> None:
    """Run the `visionflow` command line and exit with its code, skipping the interpreter's teardown."""
    try:
        app(prog_name="visionflow")
        code = 0
    except SystemExit as requested:
        code = _exit_code(requested.code)
    except KeyboardInterrupt:
        code = 130  # The shell's code for a command ended by Ctrl-C.
    if "prefect" in sys.modules:  # Logs and events still queued reach the server before it stops.
        from visionflow.cli.common import drain_prefect_workers

        drain_prefect_workers()
    stop_worker_pools()  # Idle now; the atexit handlers below would wait for each to tear down.
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def _exit_code(code: object) -> int:
    """The process exit code SystemExit's code stands for (None: 0; a message: printed, 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
