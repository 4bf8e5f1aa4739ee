"""Which code made an artefact: the git commit of the checkout (light: no torch), shared by the detector
bundles and the classical baseline's bundles."""

from __future__ import annotations

import subprocess

from datasets.settings import REPO_ROOT


def code_version() -> str:
    """The git commit of the code that made the bundle (``unknown`` outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"
