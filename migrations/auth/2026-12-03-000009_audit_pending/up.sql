-- Audit events wait here, written in the same transaction as the event they record, until
-- the service chains them into audit_log (`store::audit_chain::chain_pending`, every
-- second, and before the admin listing reads the log). Before, every append moved the
-- chain's head itself, and the head's row lock, held until the appending transaction
-- committed, let one audited transaction commit at a time (refresh, the busiest, ran at
-- about a twentieth of what PostgreSQL inserts). Now requests only insert here, in
-- parallel, and one chainer at a time (it takes the head's lock) moves a batch: it deletes
-- the rows here, hashes them in order onto the head, inserts them into audit_log and moves
-- the head, in one transaction. The chain's order is the order of chaining.
--
-- The service's role may delete rows here (the chainer does): an event is tamper-evident
-- from when it is chained and sealed, a second or so after it is written.
CREATE TABLE audit_pending (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    event       text        NOT NULL,
    actor_id    uuid,
    subject_id  uuid,
    session_id  uuid,
    ip          text,
    user_agent  text,
    request_id  text,
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb
);

GRANT SELECT, INSERT, DELETE ON audit_pending TO auth_service_app;
