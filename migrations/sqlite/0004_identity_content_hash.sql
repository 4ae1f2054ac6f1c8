-- Identity: a message that reuses an earlier message's Message-ID with other
-- content is a new message. The content hash (sender, recipients, subject,
-- date, body; no transport headers) tells a second delivery of the same
-- message from a collision. The first message with a Message-ID keeps the key
-- `mid:<id>`; a colliding one is stored as `mid:<id>#<content hash>`. Rows from
-- before this migration have no hash and stay recognised as `mid:<id>`.
ALTER TABLE messages ADD COLUMN content_hash TEXT;
ALTER TABLE quarantine ADD COLUMN content_hash TEXT;
-- The caps on notifications count the outbox's recent rows.
CREATE INDEX outbox_created ON outbox (created_at);
