-- Audit events wait here, written in the same transaction as the event they record, until
-- they are chained into audit_log by audit_chain() below (the service calls it every half
-- second, and before the admin listing, `audit verify` and `audit seal` read the log).
-- Before, every append moved the chain's head itself, and the head's row lock, held until
-- the appending transaction committed, let one audited transaction commit at a time
-- (refresh, the busiest, ran at about a twentieth of what PostgreSQL inserts). Now
-- requests only insert here, in parallel, and audit_chain() moves a batch in one go.
--
-- `content` is what the row's hash covers: the canonical encoding of the other columns,
-- computed by the service when it writes the event. `audit verify` recomputes it from the
-- columns, so a row whose content does not match them breaks the chain.
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
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    content     bytea       NOT NULL
);

-- Chain up to max_rows waiting events, oldest first: take the head (its row lock makes
-- other chainers wait), and for each event delete it here, insert it into audit_log with
-- sha256(previous hash || content), and move the head to the last. Runs with the owner's
-- rights, so the service's role needs none of its own on the chain: it may insert events
-- here and call this, but not delete or rewrite a waiting event, insert into audit_log,
-- or take the head's lock and hold it. Returns how many were chained.
CREATE FUNCTION audit_chain(max_rows integer) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS
$$
DECLARE
    head_hash bytea;
    prev_hash bytea;
    chained integer := 0;
    e record;
BEGIN
    SELECT hash INTO head_hash FROM audit_head FOR UPDATE;
    FOR e IN
        WITH taken AS (
            DELETE FROM audit_pending
            WHERE id IN (SELECT id FROM audit_pending ORDER BY id LIMIT max_rows)
            RETURNING *
        )
        SELECT * FROM taken ORDER BY id
    LOOP
        prev_hash := head_hash;
        head_hash := sha256(coalesce(prev_hash, ''::bytea) || e.content);
        INSERT INTO audit_log (occurred_at, event, actor_id, subject_id, session_id, ip,
                               user_agent, request_id, details, prev_hash, hash)
        VALUES (e.occurred_at, e.event, e.actor_id, e.subject_id, e.session_id, e.ip,
                e.user_agent, e.request_id, e.details, prev_hash, head_hash);
        chained := chained + 1;
    END LOOP;
    IF chained > 0 THEN
        UPDATE audit_head SET prev = prev_hash, hash = head_hash;
    END IF;
    RETURN chained;
END;
$$;

REVOKE ALL ON FUNCTION audit_chain(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_chain(integer) TO auth_service_app;
GRANT SELECT, INSERT ON audit_pending TO auth_service_app;
-- Only audit_chain() writes the chain now.
REVOKE INSERT ON audit_log FROM auth_service_app;
REVOKE UPDATE ON audit_head FROM auth_service_app;
