-- A restore asked in the chat may first make the account again from the backup folder's account
-- directory, when the mail server no longer has it. The request records the directory's SHA-256
-- as the backup order recorded it: the run rebuilds from no other content. NULL: the account
-- exists and nothing is created.
ALTER TABLE restores ADD COLUMN directory_sha256 TEXT;
