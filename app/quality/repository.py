from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Document


def accepted_texts(session: Session, job_id: uuid.UUID) -> Sequence[Any]:
    return session.execute(
        select(Document.text, Document.scenario_id, Document.surface_form, Document.stance)
        .where(Document.job_id == job_id, Document.status == "accepted")
        .order_by(Document.item_index)
    ).all()
