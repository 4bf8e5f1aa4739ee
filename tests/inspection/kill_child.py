"""Run a writer in a child process and SIGKILL it in full flight, for the crash-safety tests."""

from __future__ import annotations

import subprocess
import sys

from datasets.settings import REPO_ROOT


def kill_after_acknowledged(code: str, *args: str, at_least: int) -> int:
    """Run ``python -c code args...``, read the seqs it prints as it commits, kill -9 it at ``at_least``.

    Returns the last acknowledged seq; the child printing a seq means that record is durable, so
    everything up to it must survive the kill.
    """
    child = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        acknowledged = -1
        for line in child.stdout:
            acknowledged = int(line)
            if acknowledged >= at_least:
                break
        assert acknowledged >= at_least, child.stderr.read() if child.poll() is not None else "child stalled"
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()
    return acknowledged
