-- What a move says in the group, written in the move's own transaction and sent afterwards by the
-- delivery worker, oldest first: nothing is lost when Telegram or the bot is down between the
-- commit and the send. A row is sent, or given up after Telegram refused it (kept with the error).
CREATE TABLE outbox (
    id          BIGSERIAL PRIMARY KEY,
    order_id    BIGINT REFERENCES orders (id) ON DELETE CASCADE,
    message     JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    sent_at     TIMESTAMPTZ,
    given_up_at TIMESTAMPTZ
);
CREATE INDEX outbox_pending ON outbox (id) WHERE sent_at IS NULL AND given_up_at IS NULL;
