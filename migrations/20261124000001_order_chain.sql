-- The order chain: one row per order, one row per SOP step reached, the daily activity log,
-- and the people the bot has learned names for.

CREATE TABLE orders (
    id                  BIGSERIAL PRIMARY KEY,
    status              TEXT NOT NULL CHECK (status IN
                          ('ordered', 'directed', 'started', 'reported', 'received', 'logged', 'failed', 'cancelled')),
    note                TEXT,
    ordered_by          BIGINT NOT NULL,
    jfu                 BIGINT,
    group_chat_id       BIGINT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    reason              TEXT,
    closed_by           BIGINT,
    -- The message carrying the direct buttons (removed once used).
    order_message_id    BIGINT,
    -- The message edited in place with the run's progress.
    progress_message_id BIGINT,
    -- Where the run writes, kept so an interrupted run resumes into the same folders.
    local_folder        TEXT,
    server_folder       TEXT,
    -- The engine's result (per mailbox: name, size, checksum, status).
    report              JSONB
);

-- At most one active order at a time, enforced by the database itself.
CREATE UNIQUE INDEX orders_one_active ON orders ((true))
    WHERE status IN ('ordered', 'directed', 'started', 'reported');

CREATE TABLE order_steps (
    order_id   BIGINT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    step       SMALLINT NOT NULL CHECK (step BETWEEN 1 AND 8),
    actor_id   BIGINT,
    started_at TIMESTAMPTZ NOT NULL,
    ended_at   TIMESTAMPTZ,
    PRIMARY KEY (order_id, step),
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);

CREATE TABLE daily_log (
    id          BIGSERIAL PRIMARY KEY,
    log_date    DATE NOT NULL,
    order_id    BIGINT NOT NULL UNIQUE REFERENCES orders (id),
    recorded_at TIMESTAMPTZ NOT NULL,
    outcome     TEXT NOT NULL,
    summary     TEXT NOT NULL
);
CREATE INDEX daily_log_by_date ON daily_log (log_date, recorded_at);

CREATE TABLE people (
    user_id    BIGINT PRIMARY KEY,
    first_name TEXT NOT NULL,
    username   TEXT,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX people_by_username ON people (lower(username));
