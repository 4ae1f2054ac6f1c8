-- The outbox as a claimed queue: a sender claims a due row (claimed_by, a
-- name of that sender's run) until claimed_until (ms since the epoch) before
-- it sends it; another sender skips it until the claim has expired, so two
-- daemons on one database never send the same mail twice, and a crashed
-- sender's mail is sent by another later. Keep in step with
-- ../postgres/0006_outbox_claim.sql.

ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN claimed_until BIGINT;
