"""Dialect helpers shared by repositories (Postgres in service mode, SQLite embedded)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement


def dialect_insert(session: Session, table: Any) -> Any:
    """The dialect's ``INSERT`` construct, which knows ``ON CONFLICT``."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignoring_conflicts(session: Session, table: Any) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` for the session's dialect."""
    return dialect_insert(session, table).on_conflict_do_nothing()


class json_rows(FunctionElement[Any]):
    """An aggregate: the group's rows as one JSON array of arrays, ``[[a, b, …], …]``.

    A correlated subquery of it reads a parent row's children in the parent's own statement,
    one value per parent, instead of one result row per child: Postgres builds the JSON in C
    (``json_agg``) and the driver decodes it in one call, where a row per child costs Python
    a row object and a UUID each. SQLite spells it ``json_group_array``. An empty group is
    NULL on Postgres and ``[]`` on SQLite.
    """

    type = JSON()
    name = "json_rows"
    inherit_cache = True


@compiles(json_rows, "postgresql")
def _json_rows_postgresql(element: json_rows, compiler: Any, **kw: Any) -> str:
    return f"json_agg(json_build_array({compiler.process(element.clauses, **kw)}))"


@compiles(json_rows, "sqlite")
def _json_rows_sqlite(element: json_rows, compiler: Any, **kw: Any) -> str:
    return f"json_group_array(json_array({compiler.process(element.clauses, **kw)}))"
