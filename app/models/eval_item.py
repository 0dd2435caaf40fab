from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class EvalItem(Base):
    """One text of an evaluation set, with the id its owner gave it (or its line number)."""

    __tablename__ = "eval_item"

    eval_set_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("eval_set.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
