"""A parser for ``ingest.parse.parse_in_order`` that kills its process on chosen files.

A fake, on purpose: no real file at hand crashes pypdf's interpreter outright (a segfault or the kernel's OOM
killer), and the behaviour under test is what happens to the other files when that process dies. It lives in a
module of its own because the parser process imports it by name.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from ingest.parse import Parsed, ParseFailure, SplitConfig, parse_file


def parse_or_die(path: Path, config: SplitConfig) -> Parsed | ParseFailure:
    if path.name.startswith("crash"):
        if multiprocessing.parent_process() is None:  # never take the test runner down with it
            raise AssertionError(f"{path.name} was parsed in the test's own process: no parser process started")
        os._exit(70)  # as abrupt as a segfault: no exception, no clean-up
    return parse_file(path, config)


def slow_parse_reporting_pid(path: Path, config: SplitConfig) -> Parsed | ParseFailure:
    """Takes 0.3 s a file and reports which process read it (as a failure's reason: the outcome that carries a
    string), so a test can see when parsing moves to its own process."""
    import time

    time.sleep(0.3)
    return ParseFailure(str(os.getpid()), "pid")
