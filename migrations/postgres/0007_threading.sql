-- Threading: when a ticket was resolved (ms since the epoch; NULL while it is
-- not), which decides whether a reply reopens it or opens a new ticket
-- linked to it, and links between tickets: `ticket` was opened because of
-- `other` (a tag refused, a reply after the reopen window), with the
-- reason. Keep in step with ../sqlite/0007_threading.sql.

ALTER TABLE tickets ADD COLUMN resolved_at BIGINT;

CREATE TABLE ticket_links (
    ticket     BIGINT NOT NULL REFERENCES tickets (number),
    other      BIGINT NOT NULL REFERENCES tickets (number),
    reason     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (ticket, other)
);
CREATE INDEX ticket_links_other ON ticket_links (other);
