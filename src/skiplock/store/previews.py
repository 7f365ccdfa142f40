"""List previews: a listing stays small whatever its rows hold.

One page of 150 jobs with 1 MB args and results was 300 MB of JSON, and ten times that
in the API's memory. So a list sends a JSON value whole only while its JSON text is at
most PREVIEW_CHARS bytes; a longer one is NULL, and the row's `truncated` column says
what was cut: {column: {"bytes": size of its JSON text in UTF-8, "preview": its first
PREVIEW_CHARS characters}}. The cut is made in PostgreSQL, so no big value leaves the
database; the whole value comes from the row's own read (get_job, get_dead_letter, ...).
Bytes, not characters, decide: octet_length is free where length() reads the whole text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg.rows import dict_row

from skiplock.store.call import Call

PREVIEW_CHARS = 1000


def with_previews(
    page: Call[Any], columns: Sequence[str], previews: Mapping[str, str], order_by: str
) -> Call[list[dict[str, Any]]]:
    """The rows of `page` (a statement selecting `columns`, whose rows are all listed:
    its LIMIT, if any, inside) with the columns of `previews` cut as above, each row a
    dict by column name with "truncated" added. `previews` maps a column to the SQL of
    its JSON text, written over the page's row `j`; `order_by` is the order of the
    rows, over `j`."""
    assert isinstance(page.params, Mapping)
    # The texts are computed once per row (OFFSET 0 keeps the planner from inlining
    # them into each use), and only for the page's rows: the LIMIT is inside.
    texts = ", ".join(f"{text} AS {name}" for name, text in previews.items())
    select = ", ".join(
        f"CASE WHEN octet_length(t.{c}) > %(preview_chars)s THEN NULL ELSE j.{c} END AS {c}"
        if c in previews
        else f"j.{c}"
        for c in columns
    )
    cuts = ", ".join(
        f"'{c}', CASE WHEN octet_length(t.{c}) > %(preview_chars)s THEN jsonb_build_object("
        f"'bytes', octet_length(t.{c}), 'preview', left(t.{c}, %(preview_chars)s)) END"
        for c in previews
    )
    return Call(
        f"SELECT {select}, jsonb_strip_nulls(jsonb_build_object({cuts})) AS truncated"
        f" FROM ({page.sql}) j CROSS JOIN LATERAL (SELECT {texts} OFFSET 0) t"
        f" ORDER BY {order_by}",
        {**page.params, "preview_chars": PREVIEW_CHARS},
        list,
        dict_row,
        page.prepare,
    )
