"""``steel dashboard``: the Streamlit command it builds, config errors, password hashes; and the rule
that the dashboard never loads torch or the model code."""

from __future__ import annotations

import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from dashboard.auth import verify_password
from dashboard.cli import APP_PATH, app, streamlit_command
from datasets.settings import REPO_ROOT

runner = CliRunner()


def test_print_command_runs_streamlit_on_the_app(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["dashboard", "--db", "sqlite:///var/x.db", "--port", "8600", "--print-command"]
    )
    assert result.exit_code == 0, result.output
    argv = shlex.split(result.stdout.strip())
    assert argv[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    assert argv[argv.index("--server.port") + 1] == "8600"
    assert argv[argv.index("--server.headless") + 1] == "true"
    assert argv[argv.index("--") + 1 :] == ["--db", f"sqlite:///{Path.cwd() / 'var' / 'x.db'}"]


def test_passwords_stay_off_the_command_line() -> None:
    url = "postgresql+psycopg://steel:s3cret@db/inspection"
    cmd, env = streamlit_command(db_url=url, port=8501, config=Path("configs/dashboard.yaml"))
    assert "s3cret" not in " ".join(cmd) and env == {"STEEL_DASHBOARD_DB": url}
    assert cmd[-2:] == ["--config", str(Path("configs/dashboard.yaml").resolve())]


def test_a_bad_config_stops_before_streamlit(tmp_path: Path) -> None:
    bad = tmp_path / "d.yaml"
    bad.write_text("refresh_s: -1\n")
    result = runner.invoke(app, ["dashboard", "--config", str(bad), "--print-command"])
    assert result.exit_code == 2 and "refresh_s: -1 is not > 0" in result.output


def test_a_db_that_is_no_database_url_is_one_error_line_not_a_traceback() -> None:
    result = runner.invoke(app, ["dashboard", "--db", "nonsense", "--print-command"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert (
        result.stderr
        == "error: 'nonsense' is not a SQLAlchemy database URL (e.g. sqlite:///var/inspection.db)\n"
    )


def test_hash_password_command() -> None:
    result = runner.invoke(app, ["dashboard-hash-password"], input="pa55word\npa55word\n")
    assert result.exit_code == 0, result.output
    assert verify_password("pa55word", result.stdout.strip().splitlines()[-1])


def test_the_dashboard_never_imports_torch_or_model_code(seeded_url: str) -> None:
    """Import every dashboard module and run every page in a fresh interpreter, then look at sys.modules."""
    script = textwrap.dedent(
        f"""
        import importlib, os, pkgutil, sys
        os.environ["STEEL_DASHBOARD_DB"] = {seeded_url!r}
        import dashboard, dashboard.views
        for mod in pkgutil.iter_modules(dashboard.__path__, "dashboard."):
            if mod.name != "dashboard.app":
                importlib.import_module(mod.name)
        for mod in pkgutil.iter_modules(dashboard.views.__path__, "dashboard.views."):
            importlib.import_module(mod.name)
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(APP_PATH)!r}, default_timeout=60).run()
        for page in ("trends", "pareto", "coil_map", "gallery", "review", "models", "live"):
            at.switch_page(f"views/{{page}}.py").run()
            assert not at.exception, (page, [e.value for e in at.exception])
        banned = ("torch", "torchvision", "training", "onnxruntime")
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in banned)
        print("HEAVY", heavy)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "HEAVY []" in out.stdout, out.stdout[-2000:]


def _hash_password_through_pipes(text: str) -> subprocess.CompletedProcess[str]:
    """``python -m steel dashboard-hash-password`` with stdin and stdout pipes and no terminal at all
    (a new session has none), as in ``... > hash.txt``."""
    return subprocess.run(
        [sys.executable, "-m", "steel", "dashboard-hash-password"],
        input=text,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        start_new_session=True,
        timeout=60,
    )


def test_hash_password_prints_only_the_hash_on_stdout_through_a_pipe() -> None:
    result = _hash_password_through_pipes("pa55word\npa55word\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("scrypt$")
    assert verify_password("pa55word", result.stdout.strip())
    assert "Password" in result.stderr and "Repeat" in result.stderr  # the prompts, on stderr


def test_hash_password_with_no_password_given_prints_nothing_on_stdout() -> None:
    result = _hash_password_through_pipes("\n\n")
    assert result.returncode == 1 and result.stdout == ""
    assert "Aborted" in result.stderr and "Traceback" not in result.stderr
