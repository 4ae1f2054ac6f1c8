-- Conversations (issue 9): when the desk first answered (the first
-- correspondence from the desk's team: the initial response that stops the
-- SLA clock), and who holds the ticket (its owner, the tech lead).
-- Status may now also be 'stalled' (waiting on the customer); status
-- changes are events.
ALTER TABLE tickets ADD COLUMN first_response_at BIGINT;
ALTER TABLE tickets ADD COLUMN owner TEXT;
