-- The report's message, so the relay to the Kasubdit on /receive replies to it instead of
-- repeating it.
ALTER TABLE orders ADD COLUMN report_message_id BIGINT;
