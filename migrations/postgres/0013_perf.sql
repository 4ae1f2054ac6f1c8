-- Performance (issue 12). Keep in step with the other backend's 0013_perf.sql.

-- The notification caps count, per new ticket, the tickets of one requester
-- (or one alert key) that were sent mail recently: looked up by requester
-- and by ticket, not by scanning every mail of the last hour.
CREATE INDEX tickets_requester_lower ON tickets (LOWER(requester));
CREATE INDEX outbox_ticket ON outbox (ticket_number, created_at);
