"""`deploy/dev bench --grow`: the data set grown to production size straight in PostgreSQL
(generate_series, not the API), and the plans of the hot queries at that size.

Seeded: 1,000,000 todos over 10,000 owners (with their counts), 10,000 accounts with
1,000,000 sessions and as many refresh tokens (a tenth of the sessions revoked, a tenth
expired, both two days ago:
what the background purge meets, and deletes while the scenarios run). The benchmark's own accounts and todos stay as they were,
so each scenario runs against the same rows among far more."""

import subprocess

TODO_OWNERS = 10_000
TODOS_PER_OWNER = 100
ACCOUNTS = 10_000
SESSIONS_PER_ACCOUNT = 100


def psql(url, sql, capture=False):
    out = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", url, "-c", sql],
                         check=True, capture_output=True, text=True)
    return out.stdout if capture else None


def seed(pg, todo_db, auth_db):
    todo, auth = f"{pg}/{todo_db}", f"{pg}/{auth_db}"
    psql(todo, f"""
        INSERT INTO todos (id, owner_id, title, description, done, due_at, created_at, updated_at)
        SELECT gen_random_uuid(), 'grown-' || (g % {TODO_OWNERS}), 'grown ' || g,
               CASE WHEN g % 3 = 0 THEN 'a description of todo ' || g END, g % 4 = 0,
               CASE WHEN g % 2 = 0 THEN now() + (g % 1000) * interval '1 hour' END,
               now() - (g % 100000) * interval '1 second', now()
        FROM generate_series(1, {TODO_OWNERS * TODOS_PER_OWNER}) g;
        INSERT INTO todo_counts (owner_id, n)
        SELECT 'grown-' || o, {TODOS_PER_OWNER} FROM generate_series(0, {TODO_OWNERS - 1}) o;
        """)
    # Vacuumed and analysed, as tables in steady use are: autovacuum of a million fresh
    # rows would otherwise run during the scenarios.
    psql(todo, "VACUUM (ANALYZE) todos")
    psql(todo, "VACUUM (ANALYZE) todo_counts")
    total = ACCOUNTS * SESSIONS_PER_ACCOUNT
    psql(auth, f"""
        INSERT INTO users (id, email, password_hash)
        SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(u), 12, '0'))::uuid,
               'grown-' || u || '@example.com', '$argon2id$v=19$m=19456,t=2,p=1$x$y'
        FROM generate_series(1, {ACCOUNTS}) u;
        INSERT INTO sessions (id, user_id, last_used_at, expires_at, revoked_at, revoked_reason,
                              ip, refresh_delivery, created_at)
        SELECT ('00000000-0000-4000-9000-' || lpad(to_hex(g), 12, '0'))::uuid,
               ('00000000-0000-4000-8000-' || lpad(to_hex(1 + g % {ACCOUNTS}), 12, '0'))::uuid,
               now(),
               CASE WHEN g % 10 = 1 THEN now() - interval '2 days' ELSE now() + interval '30 days' END,
               CASE WHEN g % 10 = 2 THEN now() - interval '2 days' END,
               CASE WHEN g % 10 = 2 THEN 'logout' END,
               '10.0.0.1', 'body', now() - interval '1 day'
        FROM generate_series(1, {total}) g;
        INSERT INTO refresh_tokens (id, session_id, token_hash, issued_at, expires_at)
        SELECT gen_random_uuid(), ('00000000-0000-4000-9000-' || lpad(to_hex(g), 12, '0'))::uuid,
               sha256(('grown token ' || g)::bytea), now() - interval '1 day',
               CASE WHEN g % 10 = 1 THEN now() - interval '1 day' ELSE now() + interval '14 days' END
        FROM generate_series(1, {total}) g;
        """)
    for table in ("users", "sessions", "refresh_tokens"):
        psql(auth, f"VACUUM (ANALYZE) {table}")


def sizes(pg, todo_db, auth_db):
    count = lambda url, table: int(psql(url, f"SELECT count(*) FROM {table}", capture=True))
    return {
        "todos": count(f"{pg}/{todo_db}", "todos"),
        "sessions": count(f"{pg}/{auth_db}", "sessions"),
        "refresh_tokens": count(f"{pg}/{auth_db}", "refresh_tokens"),
        "users": count(f"{pg}/{auth_db}", "users"),
    }


def explain(pg, todo_db, auth_db, owner, todo_id, email):
    """EXPLAIN (ANALYZE, BUFFERS) of each hot query, with the benchmark's own rows as the
    parameters: {name: plan text}."""
    todo, auth = f"{pg}/{todo_db}", f"{pg}/{auth_db}"
    at, id_ = psql(auth, "SELECT LEAST(expires_at, revoked_at), id FROM sessions "
                   "WHERE LEAST(expires_at, revoked_at) < now() - interval '1 day' "
                   "ORDER BY 1, 2 OFFSET 100000 LIMIT 1", capture=True).strip().split("|")
    halfway = f"('{at}'::timestamptz, '{id_}'::uuid)"
    at, id_ = psql(todo, "SELECT due_at, id FROM todos WHERE owner_id = 'grown-8' "
                   "ORDER BY due_at, id OFFSET 50 LIMIT 1", capture=True).strip().split("|")
    dated = f"('{at}'::timestamptz, '{id_}'::uuid)"
    queries = {
        "a todo by id (GET, PATCH, DELETE)": (todo,
            f"SELECT * FROM todos WHERE id = '{todo_id}' AND owner_id = '{owner}'"),
        "a page of 20 of an owner's todos, oldest first": (todo,
            f"SELECT * FROM todos WHERE owner_id = '{owner}' ORDER BY created_at, id LIMIT 21"),
        "a page of 20, soonest due first": (todo,
            f"SELECT * FROM todos WHERE owner_id = '{owner}' "
            "ORDER BY due_at NULLS LAST, id LIMIT 21"),
        "the per-owner count a create takes": (todo,
            f"SELECT n FROM todo_counts WHERE owner_id = '{owner}'"),
        "login: the account by email": (auth,
            f"SELECT * FROM users WHERE lower(email) = lower('{email}')"),
        "login: the user's live sessions (the cap)": (auth,
            "SELECT id FROM sessions WHERE user_id = "
            "'00000000-0000-4000-8000-000000000001' AND revoked_at IS NULL "
            "ORDER BY created_at"),
        "refresh: the token by its hash, with its session": (auth,
            "SELECT * FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id "
            "WHERE t.token_hash = sha256('grown token 12345'::bytea)"),
        "a todo list's next page (after a cursor)": (todo,
            f"SELECT * FROM todos WHERE owner_id = '{owner}' AND (created_at, id) > "
            "(now() - interval '1 day', '00000000-0000-0000-0000-000000000000') "
            "ORDER BY created_at, id LIMIT 21"),
        # The grown owners' todos are all dated (even owners) or all undated (odd ones).
        "a page of 20 soonest due, after a cursor among the dated todos": (todo,
            f"SELECT * FROM todos WHERE owner_id = 'grown-8' AND (due_at, id) > {dated} "
            "ORDER BY due_at NULLS LAST, id LIMIT 21"),
        "... and among the undated ones": (todo,
            "SELECT * FROM todos WHERE owner_id = 'grown-7' AND due_at IS NULL AND id > "
            "'80000000-0000-0000-0000-000000000000' ORDER BY due_at NULLS LAST, id LIMIT 21"),
        # What one batch of the purge's walk reads, halfway through the seeded backlog.
        "purge: a batch of ended sessions' refresh tokens, halfway through the backlog": (auth,
            "SELECT t.id FROM sessions s JOIN refresh_tokens t ON t.session_id = s.id "
            "WHERE LEAST(s.expires_at, s.revoked_at) < now() - interval '1 day' "
            f"AND (LEAST(s.expires_at, s.revoked_at), s.id) >= {halfway} "
            "ORDER BY LEAST(s.expires_at, s.revoked_at), s.id LIMIT 1000"),
    }
    plans = {}
    for name, (url, sql) in queries.items():
        plans[name] = psql(url, f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", capture=True)
    return plans
