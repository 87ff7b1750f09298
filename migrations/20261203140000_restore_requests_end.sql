-- A restore request is checked against what the bot recorded when it asks: the backup order that
-- verified the archive, the archive's SHA-256 (the restore refuses any other content), its size
-- and message count as shown to the approver. A request ends without a decision when its asker
-- or a Kasubdit withdraws it, or when nobody decided before it expired.
ALTER TABLE restores DROP CONSTRAINT restores_status_check;
ALTER TABLE restores ADD CONSTRAINT restores_status_check CHECK (status IN
    ('asked', 'refused', 'running', 'done', 'failed', 'withdrawn', 'expired'));
ALTER TABLE restores
    ADD COLUMN backup_order BIGINT REFERENCES orders (id),
    ADD COLUMN sha256       TEXT,
    ADD COLUMN bytes        BIGINT,
    ADD COLUMN messages     BIGINT,
    ADD COLUMN expires_at   TIMESTAMPTZ;
CREATE INDEX restores_expiring ON restores (expires_at) WHERE status = 'asked';
-- A request left waiting by an older bot was checked against nothing the bot recorded and has no
-- end: it expires now (asked again, it is checked as above).
UPDATE restores SET status = 'expired' WHERE status = 'asked';
