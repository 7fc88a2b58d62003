-- The TODO service's own tables. Owners are known only by the `sub` claim of their
-- access token: there is no foreign key to the auth service's users.
CREATE TABLE todos (
    id          uuid PRIMARY KEY,
    owner_id    text        NOT NULL,
    title       text        NOT NULL,
    description text,
    done        boolean     NOT NULL DEFAULT false,
    due_at      timestamptz,
    version     bigint      NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Keyset pagination per owner, for each sort order.
CREATE INDEX todos_owner_created_idx ON todos (owner_id, created_at, id);
CREATE INDEX todos_owner_due_idx ON todos (owner_id, due_at, id);
