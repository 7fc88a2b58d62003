-- The TODO service's own tables. Owners are known only by the `sub` claim of their
-- access token: there is no foreign key to the auth service's users.
CREATE TABLE todos (
    id          uuid PRIMARY KEY,
    owner_id    text        NOT NULL,
    title       text        NOT NULL,
    description text,
    done        boolean     NOT NULL DEFAULT false,
    due_at      timestamptz,
    -- Incremented by every change; the ETag is derived from it.
    version     bigint      NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Keyset pagination per owner, for each sort order (and the admin listing).
CREATE INDEX todos_owner_created_idx ON todos (owner_id, created_at, id);
CREATE INDEX todos_owner_due_idx ON todos (owner_id, due_at, id);
CREATE INDEX todos_created_idx ON todos (created_at, id);

-- Idempotency-Key records for POST /v1/todos: the first response for a key is stored and
-- replayed for retries with the same body; a different body is refused. Rows expire.
CREATE TABLE idempotency_keys (
    owner_id        text        NOT NULL,
    key             text        NOT NULL,
    request_hash    bytea       NOT NULL,
    response_status integer     NOT NULL,
    response_body   jsonb       NOT NULL,
    location        text,
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_id, key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
