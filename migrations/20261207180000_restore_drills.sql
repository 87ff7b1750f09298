-- Restore drills: one mailbox of the newest verified backup restored into a scratch place,
-- compared with its archive and with what the backup recorded, the scratch copy removed. Asked
-- with /drill (asked_by) or scheduled (asked_by NULL). Each lands in the daily log.
CREATE TABLE restore_drills (
    id          BIGSERIAL PRIMARY KEY,
    folder      TEXT NOT NULL,
    account     TEXT NOT NULL,
    -- The backup order whose report recorded the archive, and the archive's SHA-256 then.
    order_id    BIGINT NOT NULL REFERENCES orders (id),
    sha256      TEXT NOT NULL,
    asked_by    BIGINT,
    status      TEXT NOT NULL CHECK (status IN ('running', 'passed', 'failed')),
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    ended_at    TIMESTAMPTZ,
    -- Messages compared, and what the backup recorded for the archive.
    compared    BIGINT,
    recorded    BIGINT,
    report      JSONB,
    error       TEXT,
    log_date    DATE
);
-- At most one drill running.
CREATE UNIQUE INDEX restore_drills_one_running ON restore_drills ((true)) WHERE status = 'running';
CREATE INDEX restore_drills_account ON restore_drills (account, started_at);
