-- The outbox: every mail triaged sends, written in the transaction of the event
-- that caused it, delivered later by the sender task. Keep in step with
-- ../postgres/0002_outbox.sql.

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_number   BIGINT REFERENCES tickets (number),
    kind            TEXT NOT NULL,
    mail_from       TEXT NOT NULL,
    -- JSON list of envelope recipients.
    rcpt            TEXT NOT NULL,
    -- Lower-cased first recipient: the per-sender acknowledgement limit counts it.
    first_rcpt      TEXT NOT NULL,
    subject         TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    raw             BLOB NOT NULL,
    -- pending, sent or failed.
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_message_id ON outbox (message_id);
CREATE INDEX outbox_ack ON outbox (kind, first_rcpt, created_at);

-- Each ticket's own recipient list, changeable later.
CREATE TABLE ticket_recipients (
    ticket_number BIGINT NOT NULL REFERENCES tickets (number),
    address       TEXT NOT NULL,
    PRIMARY KEY (ticket_number, address)
);
