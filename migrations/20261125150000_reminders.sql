-- One row per local day a reminder was sent (written with its outbox message in one
-- transaction), so a restart neither repeats nor skips the day's reminder.
CREATE TABLE reminders (
    day        DATE PRIMARY KEY,
    sent_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    days_since INTEGER NOT NULL
);
