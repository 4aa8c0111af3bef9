"""Schema migrations, applied in order at startup; each version runs once, in a transaction.

Times are Unix nanoseconds (BIGINT): exact, cheap to compare, no time-zone ambiguity.
Payloads are JSON text holding names, numbers and hashes only.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE runs (
                run_id UUID PRIMARY KEY,
                agent_id VARCHAR NOT NULL,
                service_name VARCHAR,
                status VARCHAR NOT NULL,
                started_ns BIGINT NOT NULL,
                ended_ns BIGINT,
                last_event_ns BIGINT NOT NULL,
                step_count INTEGER NOT NULL,
                llm_calls INTEGER NOT NULL,
                tool_calls INTEGER NOT NULL,
                retrievals INTEGER NOT NULL,
                errors INTEGER NOT NULL,
                prompt_tokens BIGINT NOT NULL,
                completion_tokens BIGINT NOT NULL,
                exit_reason VARCHAR,
                updated_ns BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE events (
                run_id UUID NOT NULL,
                event_id VARCHAR NOT NULL,
                kind VARCHAR NOT NULL,
                ts_ns BIGINT NOT NULL,
                call_id VARCHAR NOT NULL,
                payload VARCHAR NOT NULL,
                ingested_ns BIGINT NOT NULL
            )
            """,
        ),
    ),
)
MIGRATIONS += (
    (
        2,
        (
            """
            CREATE TABLE signals (
                signal_id VARCHAR PRIMARY KEY,
                run_id UUID NOT NULL,
                agent_id VARCHAR NOT NULL,
                failure_type VARCHAR NOT NULL,
                severity VARCHAR NOT NULL,
                confidence DOUBLE NOT NULL,
                step_index INTEGER NOT NULL,
                evidence VARCHAR NOT NULL,
                detected_ns BIGINT NOT NULL,
                mode VARCHAR NOT NULL,
                shadow BOOLEAN NOT NULL
            )
            """,
        ),
    ),
)
MIGRATIONS += (
    (
        3,
        (
            """
            CREATE TABLE fixes (
                fix_id VARCHAR PRIMARY KEY,
                signal_id VARCHAR NOT NULL,
                failure_type VARCHAR NOT NULL,
                agent_id VARCHAR NOT NULL,
                prompt_name VARCHAR NOT NULL,
                prompt_label VARCHAR NOT NULL,
                old_version INTEGER NOT NULL,
                new_version INTEGER NOT NULL,
                fix_content VARCHAR NOT NULL,
                applied_ns BIGINT NOT NULL,
                rolled_back_ns BIGINT
            )
            """,
        ),
    ),
)
MIGRATIONS += (
    (
        4,
        (
            """
            CREATE TABLE policies (
                id BIGINT PRIMARY KEY,
                body VARCHAR NOT NULL,
                updated_ns BIGINT NOT NULL
            )
            """,
        ),
    ),
)
MIGRATIONS += (
    (
        5,
        (
            """
            CREATE TABLE deliveries (
                delivery_id VARCHAR PRIMARY KEY,
                signal_id VARCHAR NOT NULL,
                destination VARCHAR NOT NULL,
                status VARCHAR NOT NULL,
                attempts INTEGER NOT NULL,
                next_attempt_ns BIGINT NOT NULL,
                last_error VARCHAR,
                created_ns BIGINT NOT NULL,
                sent_ns BIGINT
            )
            """,
        ),
    ),
)
MIGRATIONS += (
    (
        6,
        (
            # Where a run's events came from: "otlp" (spans, log records) or "sdk" (POST /v1/ingest).
            "ALTER TABLE runs ADD COLUMN source VARCHAR DEFAULT 'otlp'",
            # POST /v1/deploy: an agent's deploy markers (the SDK's dt.mark_deploy).
            """
            CREATE TABLE deploys (
                agent_id VARCHAR NOT NULL,
                version VARCHAR NOT NULL,
                deployed_ns BIGINT NOT NULL,
                meta VARCHAR NOT NULL
            )
            """,
        ),
    ),
)
MIGRATIONS += (
    (
        7,
        (
            # Run rows as each transaction leaves them, appended (an upsert into ``runs`` cost
            # ~3 ms of CPU per transaction, most of a small export's cost); folded into ``runs``
            # by the writer about once a second, at open and at close. ``seq`` orders them.
            # The columns of runs (no constraints: rows come from runs being written), and seq.
            "CREATE TABLE run_journal AS SELECT CAST(0 AS BIGINT) AS seq, * FROM runs LIMIT 0",
            # What readers see: each run's latest row, from the journal if it is there.
            """
            CREATE VIEW runs_now AS
            SELECT * EXCLUDE (seq) FROM run_journal
                QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY seq DESC) = 1
            UNION ALL BY NAME
            SELECT * FROM runs WHERE run_id NOT IN (SELECT run_id FROM run_journal)
            """,
        ),
    ),
)
MIGRATIONS += (
    (
        8,
        (
            # ``runs`` without its primary key. DuckDB keeps a key's index (ART) in memory, ~47
            # bytes per stored run, and the fold's upsert loads it whole: a small memory limit ran
            # out as the runs stored grew (README "Performance", memory). The fold now
            # deletes a run's old row and inserts its new one in one transaction, which needs no
            # index; it is the only writer of ``runs``, so each run keeps exactly one row.
            # ``runs_now`` stays as it is: DuckDB binds a view's names when it is queried.
            """
            CREATE TABLE runs_unkeyed (
                run_id UUID NOT NULL,
                agent_id VARCHAR NOT NULL,
                service_name VARCHAR,
                status VARCHAR NOT NULL,
                started_ns BIGINT NOT NULL,
                ended_ns BIGINT,
                last_event_ns BIGINT NOT NULL,
                step_count INTEGER NOT NULL,
                llm_calls INTEGER NOT NULL,
                tool_calls INTEGER NOT NULL,
                retrievals INTEGER NOT NULL,
                errors INTEGER NOT NULL,
                prompt_tokens BIGINT NOT NULL,
                completion_tokens BIGINT NOT NULL,
                exit_reason VARCHAR,
                updated_ns BIGINT NOT NULL,
                source VARCHAR DEFAULT 'otlp'
            )
            """,
            "INSERT INTO runs_unkeyed BY NAME SELECT * FROM runs",
            "DROP TABLE runs",
            "ALTER TABLE runs_unkeyed RENAME TO runs",
        ),
    ),
)
