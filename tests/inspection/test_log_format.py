"""Every stderr line of the daemon in JSON mode is one JSON object (issue 10.6): a real run parsed line
by line, and a real exception logged with its traceback as a field."""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

from datasets.settings import data_root
from inspection.log_format import JsonFormatter
from tests.inspection.daemon_fixtures import (
    ModelBundle,
    run_cli,
)


def test_every_stderr_line_of_a_real_run_is_one_json_object(
    tmp_path: Path, model_bundle: ModelBundle
) -> None:
    """Before the fix 'msg' was a Python repr ('...'): most lines did not parse."""
    folder = tmp_path / "camera"
    folder.mkdir()
    good = sorted((data_root() / "images").glob("*.jpg"))[:2]
    for path in good:
        shutil.copy(path, folder / path.name)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / 'quote\'s "name".jpg').write_bytes(good[0].read_bytes()[:4000])  # truncated, odd name
    down = "postgresql+psycopg://steel:steel@127.0.0.1:1/steel"  # nothing listens: warnings with details
    done = run_cli(
        "--once",
        "--json",
        "--source",
        f"folder:{folder}",
        "--db",
        down,
        "--model",
        str(model_bundle.path),
        "--set",
        f"output.dir={tmp_path / 'out'}",
        "--set",
        "folder.settle_s=0",
        "--log-level",
        "DEBUG",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert len(lines) >= 3
    records = [json.loads(line) for line in lines]  # raises on the first line that is not JSON
    assert all(isinstance(r, dict) and {"ts", "level", "logger", "msg"} <= r.keys() for r in records)
    assert any("database unreachable at start" in r["msg"] for r in records)
    assert json.loads(done.stdout)["frames_failed"] == 2


def test_an_exception_is_one_line_with_its_traceback_as_a_field() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("steel.test-json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            json.loads("{not json")
        except ValueError:
            logger.exception("could not parse %r", "{not json\nsecond line")
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR" and record["msg"] == "could not parse '{not json\\nsecond line'"
    assert record["exc"].startswith("Traceback") and "JSONDecodeError" in record["exc"]
