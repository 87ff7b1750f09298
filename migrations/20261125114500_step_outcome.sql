-- How each SOP step ended: done, failed (the run failed in it), stopped (under way when the order
-- was cancelled) or not_done (it was waiting for its actor when the order ended). NULL in rows
-- written before this column: read as done when ended, open otherwise.
ALTER TABLE order_steps
    ADD COLUMN outcome TEXT CHECK (outcome IN ('open', 'done', 'failed', 'stopped', 'not_done'));
