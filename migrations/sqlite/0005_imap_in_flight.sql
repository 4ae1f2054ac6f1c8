-- IMAP messages in hand. A watcher writes a row per UID before it parses the
-- message; the row is stale once the mailbox cursor (mailbox_state.last_uid)
-- passes the UID, which happens in the commit that records the message. A row
-- still above the cursor when a later run of the daemon starts means the run
-- named in it died with the message in hand.
CREATE TABLE imap_in_flight (
    mailbox      TEXT NOT NULL,
    uidvalidity  BIGINT NOT NULL,
    uid          BIGINT NOT NULL,
    -- The daemon run that last had it in hand.
    run_id       TEXT NOT NULL,
    -- What that run was doing: 'batch' (prepared with its chunk), 'parse' or
    -- 'commit' (taken alone after an earlier death).
    stage        TEXT NOT NULL,
    -- Runs that have had it in hand, that one included.
    attempts     BIGINT NOT NULL,
    -- Earlier runs that died while parsing it alone.
    parse_deaths BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (mailbox, uidvalidity, uid)
);
