"""Alembic migrations of the inspection database (run by ``inspection.storage.db.upgrade``)."""
