-- triaged schema, SQLite flavour. Keep in step with ../postgres/0001_init.sql.
-- Timestamps are milliseconds since the Unix epoch (UTC).

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

CREATE TABLE tickets (
    number         BIGINT PRIMARY KEY,
    desk           TEXT NOT NULL,
    desk_tag       TEXT NOT NULL,
    queue          TEXT NOT NULL,
    kind           TEXT NOT NULL,
    status         TEXT NOT NULL,
    requester      TEXT NOT NULL,
    requester_name TEXT,
    subject        TEXT NOT NULL,
    mailbox        TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX tickets_queue_status ON tickets (queue, status);

CREATE TABLE messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_number BIGINT NOT NULL REFERENCES tickets (number),
    dedupe_key    TEXT NOT NULL UNIQUE,
    message_id    TEXT,
    mailbox       TEXT NOT NULL,
    origin        TEXT NOT NULL,
    from_addr     TEXT,
    from_name     TEXT,
    to_addrs      TEXT NOT NULL,
    cc_addrs      TEXT NOT NULL,
    reply_to      TEXT NOT NULL,
    subject       TEXT,
    sent_date     BIGINT,
    in_reply_to   TEXT NOT NULL,
    refs          TEXT NOT NULL,
    auto_signals  TEXT NOT NULL,
    body_text     TEXT NOT NULL,
    body_source   TEXT NOT NULL,
    problems      TEXT NOT NULL,
    raw           BLOB NOT NULL,
    raw_size      BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    received_at   BIGINT NOT NULL
);
CREATE INDEX messages_message_id ON messages (message_id);
CREATE INDEX messages_ticket ON messages (ticket_number);

CREATE TABLE attachments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    message      BIGINT NOT NULL REFERENCES messages (id),
    name         TEXT,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL
);
CREATE INDEX attachments_message ON attachments (message);

-- Append-only history: nothing updates or deletes a row here.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_number BIGINT NOT NULL REFERENCES tickets (number),
    at            BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    actor         TEXT NOT NULL,
    detail        TEXT NOT NULL
);
CREATE INDEX events_ticket ON events (ticket_number);

CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key  TEXT NOT NULL UNIQUE,
    mailbox     TEXT NOT NULL,
    origin      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    message_id  TEXT,
    from_addr   TEXT,
    subject     TEXT,
    size        BIGINT NOT NULL,
    headers     BLOB NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Per watched IMAP folder: the UIDVALIDITY seen and the highest UID committed.
CREATE TABLE mailbox_state (
    mailbox     TEXT PRIMARY KEY,
    uidvalidity BIGINT NOT NULL,
    last_uid    BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
