"""Dialect helpers shared by repositories (Postgres in service mode, SQLite embedded)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from psycopg.errors import UniqueViolation
from psycopg.types.json import Jsonb
from sqlalchemy import JSON, ColumnElement, Table, any_, bindparam, cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NullType, TypeEngine


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


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


def array_literal(values: Iterable[object]) -> str:
    """A Postgres array literal of values whose text needs no quoting (numbers, UUIDs, hex
    digests): thousands of values as one text parameter, cast in SQL.

    (A list parameter makes the driver adapt each element in Python, which costs more than
    the statement.)
    """
    return "{" + ",".join(map(str, values)) + "}"


def among(
    session: Session,
    column: ColumnElement[Any] | InstrumentedAttribute[Any],
    values: Sequence[object],
    element: TypeEngine[Any],
) -> ColumnElement[bool]:
    """``column IN (values)``, for numbers, UUIDs or hex digests.

    On Postgres it is ``column = ANY(CAST(:p AS type[]))`` with one text parameter: the
    statement's text stays the same whatever the number of values, so the driver parses it
    once (an ``IN`` list of a few hundred placeholders is a new statement for each length, and
    its parsing costs the writer more than the query does)."""
    if not is_postgres(session):
        return column.in_(values)
    # Untyped, so that the driver sends it as text of unknown type and Postgres reads it as
    # the array type once, at bind time. A text parameter cast in SQL would be a cast the
    # executor repeats for every row a sequential scan filters.
    array = bindparam(None, array_literal(values), type_=NullType())
    return column == any_(cast(array, postgresql.ARRAY(element)))


def copy_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> bool:
    """Postgres: insert ``rows`` into ``table`` with ``COPY``, inside a savepoint; False (and
    nothing inserted) if one of them is already there.

    ``COPY`` formats the rows in the driver's C code, where an ``INSERT`` of many rows costs
    Python a placeholder, a bind step and a parse per value. A column a row leaves out takes
    the column's default (its Python one), or NULL; JSON columns take SQL NULL for None.
    """
    columns = list(table.columns)
    names = {column.name for column in columns}
    defaults: dict[str, Any] = {}
    for column in columns:
        default = column.default
        if default is None:
            defaults[column.name] = None
        elif default.is_scalar:
            defaults[column.name] = default.arg  # type: ignore[attr-defined]
        else:  # a callable: SQLAlchemy wraps it to take the execution context
            defaults[column.name] = default.arg(None)  # type: ignore[attr-defined]
    json = {column.name for column in columns if isinstance(column.type, JSON)}
    listed = ", ".join(f'"{column.name}"' for column in columns)
    statement = f'COPY "{table.name}" ({listed}) FROM STDIN'
    try:
        with session.begin_nested():
            driver = session.connection().connection.driver_connection
            assert driver is not None
            with driver.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    unknown = row.keys() - names
                    if unknown:
                        raise ValueError(f"{table.name} has no column {sorted(unknown)}")
                    values = []
                    for column in columns:
                        value = row.get(column.name, defaults[column.name])
                        if value is not None and column.name in json:
                            value = Jsonb(value)
                        values.append(value)
                    copy.write_row(values)
    except UniqueViolation:
        return False
    return True
