def test_enqueue_roundtrip(conn):
    job_id = conn.execute("SELECT skiplock.enqueue('echo', '{\"a\": 1}')").fetchone()[0]
    row = conn.execute(
        "SELECT status, args FROM skiplock.all_jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row == ("queued", {"a": 1})


def test_fresh_database_per_test(conn):
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone()[0] == 0
