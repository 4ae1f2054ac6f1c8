-- Leases: a named piece of work (a mailbox to watch, the scheduler, a
-- daemon's own liveness) held by one daemon run (holder: host, pid, random)
-- until expires_at (ms since the epoch). A holder renews its lease well
-- before it expires; another takes it only once it has expired, by an
-- atomic INSERT ... ON CONFLICT DO UPDATE ... WHERE. Keep in step with
-- ../postgres/0011_leases.sql.

CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
