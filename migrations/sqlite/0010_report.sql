-- The report card (issue 10): `triaged report` reads the tickets opened and
-- the messages received in a period. These indexes let it find them by time
-- without reading every row (a message row holds its raw bytes; the second
-- column makes the index cover the per-mailbox count). Keep in step with
-- ../postgres/0010_report.sql.
CREATE INDEX tickets_created ON tickets (created_at);
CREATE INDEX messages_received ON messages (received_at, mailbox);
