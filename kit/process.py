"""Ending a process that used the Temporal client."""

import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn


def exit_without_finalising(run: Callable[[], int]) -> NoReturn:
    """Run `run` and exit with its status, skipping interpreter finalisation.

    The Temporal client's native threads can crash CPython's finalisation (SIGABRT after
    the work is done: temporalio/sdk-python#300), which would turn success into failure.
    """
    try:
        status = run()
    except SystemExit as stop:  # argparse's usage errors
        status = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
