-- The routing decision kept on the ticket: urgency x impact = priority, the
-- initial-response due time (ms since the epoch), tags, and the alert key that
-- folds repeated alerts into one open ticket.
ALTER TABLE tickets ADD COLUMN urgency TEXT;
ALTER TABLE tickets ADD COLUMN impact TEXT;
ALTER TABLE tickets ADD COLUMN priority TEXT;
ALTER TABLE tickets ADD COLUMN due_at BIGINT;
ALTER TABLE tickets ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE tickets ADD COLUMN alert_key TEXT;
CREATE INDEX tickets_alert_key ON tickets (alert_key);
