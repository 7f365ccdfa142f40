"""bench/compare.py's parts: one module per system measured, the scenarios, the report.

Each system module (skiplock_peer, pgqueuer_peer, procrastinate_peer, raw_sql) declares
the same things: CONFIG (how it is run, for the table), VARIANTS (the settings of its
docs tried in every round; the best is reported with its name), LATENCY (whether it
has a latency scenario), install(dsn), open_producer(dsn) and worker(dsn, variant,
ready, stamp), the body of the worker subprocess.
"""
