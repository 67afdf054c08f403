"""Bulk statements of the upsert engine, each in the form that is fastest on its database."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection as db_connection

CHUNK = 400  # values per IN (…) list: well under SQLite's bound-parameter limit


def chunks(items: Sequence, size: int = CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def in_values(column: str, values: Sequence) -> Iterable[tuple[str, list]]:
    """`(condition, parameters)` pieces that together match `column` against `values`.

    PostgreSQL: one `= ANY(%s)` with the values as an array. psycopg binds client-side and
    re-parses any statement with more than 50 parameters on every call, so an `IN` list of 400
    placeholders costs more in Python than the query costs the server. Elsewhere: `IN (…)` lists
    of at most CHUNK values.
    """
    if not values:
        return
    qn = db_connection.ops.quote_name
    if db_connection.vendor == "postgresql":
        yield f"{qn(column)} = ANY(%s)", [list(values)]
        return
    for chunk in chunks(values):
        yield f"{qn(column)} IN ({', '.join(['%s'] * len(chunk))})", list(chunk)


def insert_rows(table: str, columns: Sequence[str], rows: Sequence[Sequence]) -> None:
    """INSERT `rows` (parameters ready for this database) into `table`.

    PostgreSQL: COPY, one statement for all rows (executemany sends one INSERT per row, and the
    server parses and plans each: 4-6× slower here). Elsewhere: executemany of one prepared
    INSERT, which is SQLite's fastest path (faster than multi-row VALUES).
    """
    if not rows:
        return
    qn = db_connection.ops.quote_name
    names = ", ".join(qn(c) for c in columns)
    with db_connection.cursor() as cursor:
        if db_connection.vendor == "postgresql":
            with cursor.copy(f"COPY {qn(table)} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(f"INSERT INTO {qn(table)} ({names}) VALUES ({', '.join(['%s'] * len(columns))})", rows)  # noqa: S608


def update_rows(model, columns: Sequence[str], rows: Sequence[Sequence], *, also: str = "") -> None:
    """UPDATE rows of `model` by id: each row is the new values of `columns`, then the row's id;
    `also` adds assignments that every row gets (`"version = version + 1"`).

    PostgreSQL: one `UPDATE … FROM unnest(arrays)` per call, the ids also given as `= ANY` so the
    planner finds the rows by primary key instead of hashing the whole table; elsewhere
    executemany by id.
    """
    if not rows:
        return
    qn = db_connection.ops.quote_name
    table = qn(model._meta.db_table)
    extra = f", {also}" if also else ""
    with db_connection.cursor() as cursor:
        if db_connection.vendor == "postgresql":
            by_column = {f.column: f for f in model._meta.concrete_fields}
            types = [by_column[c].db_type(db_connection) for c in columns] + ["bigint"]
            names = [f"c{i}" for i in range(len(columns))]
            cursor.execute(
                f"UPDATE {table} SET {', '.join(f'{qn(c)} = u.{n}' for c, n in zip(columns, names, strict=True))}{extra} "  # noqa: S608
                f"FROM unnest({', '.join(f'%s::{t}[]' for t in types)}) AS u({', '.join(names)}, row_id) "
                f"WHERE {table}.id = ANY(%s) AND {table}.id = u.row_id",
                [*(arrays := [list(values) for values in zip(*rows, strict=True)]), arrays[-1]],
            )
        else:
            cursor.executemany(f"UPDATE {table} SET {', '.join(f'{qn(c)} = %s' for c in columns)}{extra} WHERE id = %s", rows)  # noqa: S608


def refresh_statistics(tables: Iterable[str]) -> None:
    """ANALYZE `tables` on PostgreSQL (elsewhere nothing to do).

    The planner picks index probes for the engine's `= ANY(array)` lookups only when it knows a
    table is large. A first sync grows tables from nothing faster than autovacuum re-samples them
    (and some servers run with autovacuum off): on stale statistics each page's lookup scans the
    connection's whole index, and a first sync of 100,000 records slows quadratically. Callers
    that grow tables in bulk call this as they go (ANALYZE samples; it takes ~0.1 s on 100,000
    rows and blocks no reader or writer)."""
    if db_connection.vendor != "postgresql":
        return
    qn = db_connection.ops.quote_name
    with db_connection.cursor() as cursor:
        for table in dict.fromkeys(tables):
            cursor.execute(f"ANALYZE {qn(table)}")


class StatisticsKeeper:
    """Refreshes the statistics of tables a job grows in bulk: after 1,000 new rows, then each
    time the count doubles (2,000, 4,000, …), so a job that loads n rows analyzes log2(n/1000)
    times."""

    def __init__(self, tables: Iterable[str], first: int = 1_000):
        self.tables, self.rows, self.next = list(tables), 0, first

    def grew(self, rows: int) -> None:
        self.rows += rows
        if rows and self.rows >= self.next:
            refresh_statistics(self.tables)
            self.next = self.rows * 2
