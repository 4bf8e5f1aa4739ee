"""The model registry: bundles registered by their manifest, and the one active model.

Every daemon registers the bundle it runs and a frame names the version that scored it, so registration
is idempotent by version and an unknown version gets a placeholder row that registering fills in later.
Activation keeps exactly one active row and appends to the audit trail of
:mod:`inspection.storage.model_history` in the same transaction. Functions take the caller's ``Session``
and never commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from inspection.storage.idempotent import insert_ignore
from inspection.storage.model_history import record_activation
from inspection.storage.schema import ModelVersion, utcnow

log = logging.getLogger(__name__)

_PG_ACTIVATION_LOCK = 0x5713E2  # pg_advisory_xact_lock key: one model activation at a time


def _manifest_fields(manifest: Mapping[str, Any], path: str | Path | None) -> dict[str, Any]:
    version = str(manifest["version"])
    architecture = manifest.get("architecture") or {}
    return {
        "version": version,
        "name": str(manifest.get("name") or version),
        "path": None if path is None else str(path),
        "family": architecture.get("family") if isinstance(architecture, Mapping) else None,
        "class_names": [str(c) for c in manifest.get("class_names") or []],
        "metrics": dict(manifest.get("metrics") or {}),
        "manifest": json.loads(json.dumps(dict(manifest))),  # as the JSON column will hand it back
    }


def register_model_version(session: Session, manifest: Mapping[str, Any], path: str | Path | None) -> int:
    """Register a bundle by its manifest (``training.bundle`` format); returns its ``model_versions.id``.

    Idempotent by ``manifest["version"]``: registering the same manifest again returns the same id, and a
    placeholder row (made when a frame named the version first) is filled in. A *different* manifest under
    a version already registered is refused (ValueError): versions are the registry's key.
    """
    values = _manifest_fields(manifest, path)
    row = session.scalars(select(ModelVersion).where(ModelVersion.version == values["version"])).one_or_none()
    if row is None:
        new_id = insert_ignore(session, ModelVersion, {**values, "created_at": utcnow()}, ["version"])
        if new_id is not None:
            return int(new_id)
        row = session.scalars(select(ModelVersion).where(ModelVersion.version == values["version"])).one()
    if not row.manifest:  # placeholder
        for key, value in values.items():
            setattr(row, key, value)
        session.flush()
    elif row.manifest != values["manifest"]:
        raise ValueError(
            f"model version {values['version']!r} is already registered with a different manifest"
        )
    return int(row.id)


def model_version_id(session: Session, version: str | None) -> int | None:
    """Id of the registered ``version`` (None for None); an unknown one gets a placeholder row (see
    ``ModelVersion``), so a frame naming it can be stored before its bundle is registered."""
    if version is None:
        return None
    found = session.scalar(select(ModelVersion.id).where(ModelVersion.version == version))
    if found is not None:
        return int(found)
    log.warning("model version %r is not registered: storing a placeholder row", version)
    placeholder = {"version": version, "name": version, "class_names": [], "metrics": {}, "manifest": {}}
    new_id = insert_ignore(session, ModelVersion, {**placeholder, "created_at": utcnow()}, ["version"])
    if new_id is None:  # registered concurrently
        new_id = session.execute(select(ModelVersion.id).where(ModelVersion.version == version)).scalar_one()
    return int(new_id)


def activate_model(
    session: Session,
    version: str,
    *,
    promoted_by: str | None = None,
    note: str | None = None,
    kind: str = "manual",
    forced: bool = False,
) -> ModelVersion:
    """Make ``version`` the one active model (LookupError if unknown); a no-op when it already is.

    Deactivates the others first, in the same transaction, so no reader ever sees two active models or,
    once committed, none; the partial unique index refuses a second active row whatever the code does.
    Every activation appends a row to the history (``model_activations``: who, why, from which version,
    ``kind`` manual/retrain/daemon, ``forced`` past a gate rejection), in the same transaction.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_ACTIVATION_LOCK})
    target = session.scalars(select(ModelVersion).where(ModelVersion.version == version)).one_or_none()
    if target is None:
        raise LookupError(f"model version {version!r} is not registered")
    if target.is_active:
        return target
    previous = session.scalar(select(ModelVersion.version).where(ModelVersion.is_active))
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.is_active, ModelVersion.id != target.id)
        .values(is_active=False)
    )
    target.is_active = True
    target.activated_at = utcnow()
    target.promoted_by = promoted_by
    target.note = note
    session.flush()
    record_activation(
        session,
        version=version,
        previous_version=previous,
        kind=kind,
        actor=promoted_by,
        reason=note,
        forced=forced,
    )
    return target


def active_model(session: Session) -> ModelVersion | None:
    """The active model version, or None when none has been activated."""
    return session.scalars(select(ModelVersion).where(ModelVersion.is_active)).one_or_none()
