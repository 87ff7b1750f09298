-- Restores asked in the chat: asked by a Kasi, approved or refused by a Kasubdit (two people for
-- an operation that writes into a mailbox), then run by the bot. Each lands in the daily log.
CREATE TABLE restores (
    id          BIGSERIAL PRIMARY KEY,
    folder      TEXT NOT NULL,
    account     TEXT NOT NULL,
    into_account TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('asked', 'refused', 'running', 'done', 'failed')),
    asked_by    BIGINT NOT NULL,
    asked_at    TIMESTAMPTZ NOT NULL,
    decided_by  BIGINT,
    decided_at  TIMESTAMPTZ,
    ended_at    TIMESTAMPTZ,
    report      JSONB,
    error       TEXT,
    log_date    DATE
);
-- At most one restore waiting or running.
CREATE UNIQUE INDEX restores_one_open ON restores ((true)) WHERE status IN ('asked', 'running');
