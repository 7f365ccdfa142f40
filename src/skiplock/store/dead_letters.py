"""Reading the dead letters: the dead_letters view (sql/functions/020_views.sql)."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from skiplock.store.call import Call, first
from skiplock.store.previews import with_previews

DEAD_LETTER_COLUMNS = (
    "id",
    "task",
    "queue",
    "attempt",
    "max_attempts",
    "last_error",
    "failed_at",
    "args",
    "errors",
    "created_at",
)
_DEAD_LETTERS = f"SELECT {', '.join(DEAD_LETTER_COLUMNS)} FROM skiplock.dead_letters"
DEAD_LETTER_PREVIEWS = {
    "last_error": "to_jsonb(j.last_error)::text",
    "args": "j.args::text",
    "errors": "j.errors::text",
}


def list_dead_letters(
    *,
    queue: str | None = None,
    task: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> Call[list[dict[str, Any]]]:
    """Newest first; `before_id` pages back (keyset: ids below it). Each row with
    "truncated": its args, errors and last error longer than PREVIEW_CHARS are cut to a
    preview (see store.previews); get_dead_letter has them whole."""
    page = Call(
        f"{_DEAD_LETTERS}"
        " WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)"
        "   AND (%(task)s::text IS NULL OR task = %(task)s)"
        "   AND (%(before)s::bigint IS NULL OR id < %(before)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"queue": queue, "task": task, "before": before_id, "limit": limit},
        list,
        dict_row,
    )
    return with_previews(page, DEAD_LETTER_COLUMNS, DEAD_LETTER_PREVIEWS, "id DESC")


def get_dead_letter(job_id: int) -> Call[dict[str, Any] | None]:
    """One dead letter, whole; None when no dead letter has this id."""
    return Call(f"{_DEAD_LETTERS} WHERE id = %s", (job_id,), first, dict_row)
