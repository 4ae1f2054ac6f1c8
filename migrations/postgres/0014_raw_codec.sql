-- Stored mail compressed (issue 12: a store no larger than the mail). Keep in
-- step with the other backend's 0014_raw_codec.sql.

-- How messages.raw and outbox.raw are kept: 'none' (the bytes as they are,
-- every row from before this migration), 'zstd' (one zstd frame with its
-- size: messages written since) or 'zstd-mail1' (the same with the shipped
-- dictionary of composed mail: outbox rows written since); src/store/codec.rs.
-- Messages written since keep an empty body_text: the body is derived from
-- raw when read.
ALTER TABLE messages ADD COLUMN raw_codec TEXT NOT NULL DEFAULT 'none';
ALTER TABLE outbox ADD COLUMN raw_codec TEXT NOT NULL DEFAULT 'none';
