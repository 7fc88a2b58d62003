-- How many todos each owner has, so that a create checks the per-owner limit and inserts
-- in one statement (no transaction, no per-owner lock, no count of the owner's rows):
--
--   WITH slot AS (INSERT INTO todo_counts ... ON CONFLICT DO UPDATE SET n = n + 1
--                 WHERE n < limit RETURNING owner_id)
--   INSERT INTO todos ... SELECT ... FROM slot
--
-- The conflicting row is locked and its WHERE re-checked against the newest version, so
-- concurrent creates for one owner cannot pass the limit together. Creates count through
-- that statement (store::todos::insert_counted); deletes of any kind count through the
-- trigger below. Rows written to `todos` by hand (a bulk seed) must add to `todo_counts`.
CREATE TABLE todo_counts (
    owner_id text   PRIMARY KEY,
    n        bigint NOT NULL CHECK (n >= 0)
);

INSERT INTO todo_counts (owner_id, n)
SELECT owner_id, count(*) FROM todos GROUP BY owner_id;

CREATE FUNCTION todo_counts_after_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE todo_counts c
    SET n = c.n - gone.k
    FROM (SELECT owner_id, count(*) AS k FROM deleted_todos GROUP BY owner_id) gone
    WHERE c.owner_id = gone.owner_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER todos_count_deletes
AFTER DELETE ON todos
REFERENCING OLD TABLE AS deleted_todos
FOR EACH STATEMENT EXECUTE FUNCTION todo_counts_after_delete();
