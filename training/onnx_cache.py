"""ONNX exports of a bundle, made once and kept beside it, named by its weights' sha256.

The file name carries the hash of the weights the graph was made from, so a bundle whose weights changed
(a retrain written into the same folder) never runs a stale graph: its hash names a file that does not
exist yet, and a fresh export is made. When the bundle folder is read-only (an installed model, a
read-only mount) the export goes to a per-user cache folder instead (``STEEL_CACHE_DIR`` overrides it).
Files are written under a temporary name and renamed, so two daemons starting together never read a
half-written graph.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from training.bundle import Bundle

log = logging.getLogger("steel.onnx")

# Bumped when the exported graph changes meaning (inputs, outputs, opset): old files are then not reused.
EXPORT_REVISION = "r1"


def default_cache_dir() -> Path:
    env = os.environ.get("STEEL_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "steel-inspection" / "onnx"


def weights_sha256(bundle: Bundle) -> str:
    """The hash of the weights in memory: the manifest's, which ``load_bundle`` checked against the file
    it loaded. Not the file's hash now: a retrain replacing the file after loading would otherwise name
    an export of the old weights after the new ones."""
    return str(bundle.manifest["weights"]["sha256"])


def export_name(sha256: str, variant: str = "fp32") -> str:
    return f"model-{EXPORT_REVISION}-{variant}-{sha256}.onnx"


def _writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: tried, since permission bits say nothing for root
    (an immutable folder or a read-only mount refuses root too)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def cached_path(bundle: Bundle, variant: str = "fp32") -> Path:
    """Where the export of this bundle's current weights lives: an existing file wherever it is, else
    beside the bundle when that folder is writable, else in the cache folder."""
    name = export_name(weights_sha256(bundle), variant)
    beside, cache = bundle.path / name, default_cache_dir() / name
    for candidate in (beside, cache):
        if candidate.is_file():
            return candidate
    return beside if _writable(bundle.path) else cache


def ensure_cached(bundle: Bundle, make: Callable[[Path], object], variant: str = "fp32") -> Path:
    """The cached export for ``variant``, made with ``make(tmp_path)`` when it is missing."""
    target = cached_path(bundle, variant)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=target.parent)
    os.close(fd)
    try:
        make(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a daemon under another user reads it
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("exported %s (%s) to %s", bundle.version, variant, target)
    if target.parent == bundle.path:
        _remove_stale(bundle.path, keep_sha256=weights_sha256(bundle))
    return target


def _remove_stale(folder: Path, *, keep_sha256: str) -> None:
    """Delete this bundle folder's exports of weights it no longer holds (a retrain written over it).
    Only beside the bundle: the shared cache folder holds other bundles' exports. A session already
    made from a deleted file keeps running (the graph is in memory)."""
    for path in folder.glob("model-*-*-*.onnx"):
        if not path.name.endswith(f"-{keep_sha256}.onnx"):
            path.unlink(missing_ok=True)
            log.info("removed stale export %s", path)
