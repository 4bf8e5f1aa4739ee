"""``python -m steel ...`` runs the ``steel`` command (the same app as the installed script)."""

from steel.cli import app

if __name__ == "__main__":
    app()
