-- The SLA clock (issue 10).
-- tickets.sla_next_at: when the scheduler must look at the ticket next (its
-- next warning, escalation or daily status), NULL when nothing is pending.
-- 0 means "at once": every change to a ticket's clocks (a new ticket, a
-- status change, the initial response, a transfer) sets it, so the next tick
-- recomputes the ticket's deadlines. A tick reads only tickets whose
-- sla_next_at has come (index), never every ticket.
-- sla_sent: each level of each clock, and each day's status, once per
-- ticket: the row is inserted in the transaction that queues its mail, and
-- the unique key decides which of several daemons sends it.
ALTER TABLE tickets ADD COLUMN sla_next_at BIGINT;
CREATE INDEX tickets_sla_next ON tickets (sla_next_at, number);
-- Tickets that exist already are looked at once.
UPDATE tickets SET sla_next_at = 0 WHERE status <> 'resolved';

CREATE TABLE sla_sent (
    ticket_number BIGINT NOT NULL REFERENCES tickets (number),
    -- 'response', 'resolution' or 'daily'.
    clock         TEXT NOT NULL,
    -- 'warning', 'escalation', 'level2', ..., 'oncall'; a date (YYYY-MM-DD,
    -- the desk's) for a daily status.
    level         TEXT NOT NULL,
    -- 'sent', 'skipped' (a later level was due at the same time) or
    -- 'suppressed' (nobody to send it to).
    outcome       TEXT NOT NULL,
    due_at        BIGINT NOT NULL,
    at            BIGINT NOT NULL,
    PRIMARY KEY (ticket_number, clock, level)
);
