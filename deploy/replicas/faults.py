"""Faults, each bounded in time and undone even when a step fails: the auth service stopped,
an auth replica killed amid refreshes, PostgreSQL stopped and hanging, Redis stopped,
emptied and hanging."""

import hashlib
import sys
import time
import uuid

from common import PASSWORD, Loop, call, check, fault, forged_kid, psql, source, timed

# TODO_DENYLIST_MAX_STALENESS_SECS on the replicas stack (the default).
STALENESS = 5


def auth_outage(args, accounts):
    """Every auth replica stopped, for longer than the denylist's staleness bound: the TODO
    replicas keep verifying with the keys they hold (the lease left by the last clean stop
    keeps their denylist trusted), a token naming an unknown key is refused at once, and a
    login through nginx fails fast."""
    token = accounts.login(accounts.take()[0])["access_token"]
    for i in range(1, len(args.auth) + 1):
        fault(args, f"auth-{i}", "stop")
    try:
        stopped = time.monotonic()
        forged = forged_kid(token)
        results = []
        while time.monotonic() - stopped < STALENESS + 2:
            for p in args.todo:
                base = f"http://127.0.0.1:{p}"
                results.append(("known", *timed(base, "GET", "/v1/todos", token=token)[:2]))
                results.append(("unknown", *timed(base, "GET", "/v1/todos", token=forged)[:2]))
            time.sleep(0.25)
        login = timed(args.front, "POST", "/v1/auth/login",
                      body={"email": accounts.take()[0], "password": PASSWORD}, source=source(7))
        known = [r for r in results if r[0] == "known"]
        unknown = [r for r in results if r[0] == "unknown"]
        slowest = max(r[2] for r in results)
        check(all(r[1] == 200 for r in known) and all(r[1] == 401 for r in unknown)
              and slowest < 1.0,
              f"every auth replica stopped for {STALENESS + 2} s: {len(known)} requests with a "
              f"held key answered 200 throughout, {len(unknown)} naming an unknown key 401, the "
              f"slowest in {slowest * 1000:.0f} ms "
              f"(statuses {sorted(set((r[0], r[1]) for r in results))})")
        check(login[0] == 502 and login[1] < 1.0,
              f"a login through nginx meanwhile fails at once ({login[0]} in {login[1] * 1000:.0f} ms)")
    finally:
        for i in range(1, len(args.auth) + 1):
            fault(args, f"auth-{i}", "start")
        time.sleep(3)  # nginx's fail_timeout
    status, _, _ = call(args.front, "POST", "/v1/auth/login",
                        {"email": accounts.take()[0], "password": PASSWORD}, source=source(7))
    check(status == 200, f"logins resume once the auth replicas are back ({status})")


def kill_mid_refresh(args, accounts, clients):
    """kill -9 of an auth replica while clients refresh through nginx as fast as they can;
    a client whose answer is lost retries with the token it holds, as an SPA would."""
    held = [accounts.login(e) for e in accounts.take(clients)]
    sessions = [h["session_id"] for h in held]
    state = [{"token": h["refresh_token"], "ok": 0, "lost": 0, "ended": None} for h in held]

    def step(i):
        st = state[i]
        if st["ended"]:
            time.sleep(0.05)
            return "idle"
        status, _, body = timed(args.front, "POST", "/v1/auth/refresh",
                                body={"refresh_token": st["token"]})
        code = body.get("code") if isinstance(body, dict) else None
        if status == 200:
            st["token"] = body["refresh_token"]
            st["ok"] += 1
        elif status == 401:
            st["ended"] = code
        else:
            st["lost"] += 1
            time.sleep(0.05)
        return (status, code)
    loop = Loop(clients, step)
    try:
        time.sleep(2)
        fault(args, "auth-1", "kill")
        time.sleep(2)
    finally:
        fault(args, "auth-1", "start")
        time.sleep(4)
        records = loop.finish()
    answers = {r for _, r in records if r != "idle"}
    # A lost answer is nginx's 502 (or a connection error); a retry after it may be reuse.
    odd = sorted(a for a in answers if a[0] not in (200, 502, 0)
                 and a != (401, "REFRESH_TOKEN_REUSED"))
    ids = ",".join(f"'{s}'" for s in sessions)
    doubled = int(psql(args, f"""SELECT count(*) FROM (SELECT session_id FROM refresh_tokens
        WHERE session_id IN ({ids}) AND used_at IS NULL GROUP BY session_id
        HAVING count(*) > 1) x"""))
    hashes = ",".join("'\\x" + hashlib.sha256(st["token"].encode()).hexdigest() + "'"
                      for st in state)
    known = int(psql(args, f"SELECT count(*) FROM refresh_tokens WHERE token_hash IN ({hashes})"))
    live_unspent = int(psql(args, f"""SELECT count(*) FROM refresh_tokens t
        WHERE token_hash IN ({hashes}) AND used_at IS NULL"""))
    lost = sum(st["lost"] for st in state)
    ended = [st["ended"] for st in state if st["ended"]]
    check(doubled == 0 and known == clients and not odd and lost > 0,
          f"kill -9 of auth-1 amid {sum(st['ok'] for st in state)} refreshes by {clients} "
          f"clients: no session with two usable refresh tokens ({doubled}), every token a client "
          f"holds is in the database ({known} of {clients}), no answer but 200, 502 or "
          f"REFRESH_TOKEN_REUSED ({odd or 'none'}); {lost} answers lost to the kill, "
          f"{len(ended)} sessions ended by a retry the database saw as reuse, "
          f"{live_unspent} clients hold a usable token")


def postgres_outage(args, accounts, seconds):
    """PostgreSQL stopped under creates with an Idempotency-Key (each retried with its key
    until acknowledged), refreshes and logins, then started again."""
    gone = accounts.login(accounts.take()[0])["access_token"]
    status, _, _ = call(args.front, "POST", "/v1/auth/logout", token=gone)
    assert status == 204, status
    # One owner per creating client, so no owner nears the per-owner limit.
    tokens = [accounts.login(e)["access_token"] for e in accounts.take(4)]
    acked = {}
    pending = {}

    def step(i):
        key = pending.get(i) or uuid.uuid4().hex
        pending[i] = key
        status, secs, body = timed(args.front, "POST", "/v1/todos", body={"title": key},
                                   token=tokens[i], headers={"Idempotency-Key": key})
        if status in (200, 201):
            acked[key] = (i, body["id"])
            pending.pop(i)
            return status, secs
        time.sleep(0.05)
        return status, secs, (body or {}).get("detail") if isinstance(body, dict) else body
    # Beside them: a client refreshing its session, and logins of new accounts from new
    # addresses (so that no login limit answers before the database would).
    pair = accounts.login(accounts.take()[0])
    refresh = {"token": pair["refresh_token"]}
    logins = {"n": 0}

    def auth_step(i):
        if i == 0:
            status, secs, body = timed(args.front, "POST", "/v1/auth/refresh",
                                       body={"refresh_token": refresh["token"]})
            if status == 200:
                refresh["token"] = body["refresh_token"]
        else:
            logins["n"] += 1
            status, secs, _ = timed(args.front, "POST", "/v1/auth/login",
                                    body={"email": accounts.take()[0], "password": PASSWORD},
                                    source=source(2000 + logins["n"]))
        time.sleep(0.2)
        return ("refresh" if i == 0 else "login"), status, secs
    loop = Loop(4, step)
    auth_loop = Loop(2, auth_step)
    try:
        time.sleep(2)
        asked = time.monotonic()
        fault(args, "postgres", "stop")
        stopped = time.monotonic()
        ready = [timed(f"http://127.0.0.1:{p}", "GET", "/readyz") for p in args.auth + args.todo]
        verifying = [timed(f"http://127.0.0.1:{p}", "GET", "/v1/todos", token=gone)[0]
                     for p in args.todo]
        time.sleep(seconds)
    finally:
        # pg_ctl returns once PostgreSQL accepts connections: answers may succeed just
        # before `started`.
        restart_asked = time.monotonic()
        fault(args, "postgres", "start")
        started = time.monotonic()
        time.sleep(6)
        records = loop.finish()
        auth_records = auth_loop.finish()
    # Whatever was in flight when it stopped included: never a 500.
    auth_odd = sorted({r[1] for t, r in auth_records if t > asked} - {200, 503})
    auth_down = [r for t, r in auth_records if stopped + 0.2 < t < restart_asked]
    auth_failing = [t for t, r in auth_records if t > restart_asked and r[1] != 200]
    auth_back = max(auth_failing, default=started) - started
    check(not auth_odd and {k for k, s, _ in auth_down if s == 503} == {"refresh", "login"}
          and all(s == 503 and secs < 1.0 for _, s, secs in auth_down) and auth_back < 5,
          f"refreshes and logins through the outage: {len(auth_down)} answered 503 within 1 s "
          f"while it was down (other statuses from the stop on: {auth_odd or 'none'}), every "
          f"one 200 from {max(auth_back, 0):.1f} s after it was back")
    during = [r for t, r in records if stopped + 0.2 < t < restart_asked]
    odd = sorted({r[0] for t, r in records if t > asked} - {200, 201, 503})
    # Recovered: from the last failed create on.
    failing = [t for t, r in records if t > restart_asked and r[0] not in (200, 201)]
    back = max(max(failing, default=started) - started, 0)
    unexpected = sorted({r[0] for r in during} - {503}) + odd
    if unexpected:
        print("timeline (s from the stop; status, s taken, detail):", file=sys.stderr)
        for t, r in records:
            if t > asked and (r[0] not in (200, 201, 503)
                              or stopped + 0.2 < t < restart_asked and r[0] != 503):
                print(f"  {t - stopped:7.3f} {r}", file=sys.stderr)
    slowest = max((r[1] for r in during), default=0)
    check(during and not unexpected and slowest < 1.0,
          f"PostgreSQL stopped for {seconds} s: {len(during)} creates answered 503 "
          f"(other statuses, also of requests in flight at the stop: {unexpected or 'none'}), "
          f"the slowest in {slowest * 1000:.0f} ms")
    check(all(s == 503 and "postgres" in str(b) for s, _, b in ready),
          f"readiness of every replica names postgres ({[(s, str(b)[:60]) for s, _, b in ready][:2]} ...)")
    check(all(s == 401 for s in verifying),
          f"meanwhile the TODO replicas still refuse a revoked token ({verifying})")
    check(back < 5, f"every create succeeded from {back:.1f} s after PostgreSQL was back on "
          f"(the pools reconnect)")
    keys = ",".join(f"'{k}'" for k in acked)
    rows = psql(args, f"SELECT title, count(*) FROM todos WHERE title IN ({keys}) GROUP BY title",
                db=args.todo_db) if acked else ""
    counts = dict(line.split("|") for line in rows.splitlines() if line)
    missing = [k for k in acked if k not in counts]
    twice = [k for k, c in counts.items() if int(c) > 1]
    # Each acknowledged key sent again: the first answer replayed, not a second todo.
    replayed = [(k, timed(args.front, "POST", "/v1/todos", body={"title": k}, token=tokens[i],
                          headers={"Idempotency-Key": k})) for k, (i, _) in list(acked.items())[:50]]
    not_replayed = [k for k, (s, _, b) in replayed
                    if s not in (200, 201) or not isinstance(b, dict) or b.get("id") != acked[k][1]]
    check(acked and not missing and not twice and not not_replayed,
          f"{len(acked)} acknowledged creates (retried with their Idempotency-Key through the "
          f"outage): every one stored, none twice (missing {len(missing)}, twice {len(twice)}); "
          f"{len(replayed)} sent again after it got the first answer back "
          f"({len(not_replayed)} did not)")


def postgres_hang(args, accounts, seconds):
    """PostgreSQL hanging (its processes stopped: connections accepted, nothing answered):
    requests fail by the service's own timeouts, not later, and recover."""
    token = accounts.login(accounts.take()[0])["access_token"]
    loop = Loop(4, lambda i: timed(args.front, "GET", "/v1/todos", token=token)[:2])
    try:
        time.sleep(1)
        fault(args, "postgres", "hang")
        hung = time.monotonic()
        ready = timed(f"http://127.0.0.1:{args.todo[0]}", "GET", "/readyz")
        time.sleep(seconds)
    finally:
        fault(args, "postgres", "resume")
        resumed = time.monotonic()
        time.sleep(3)
        records = loop.finish()
    # Every request answered while it hung (from half a second in: one answered just before
    # the processes stopped may still arrive).
    answered = [r for t, r in records if hung + 0.5 < t < resumed]
    slowest = max((r[1] for r in answered), default=0)
    statuses = sorted({r[0] for r in answered})
    back = [t for t, r in records if t > resumed and r[0] == 200]
    check(answered and statuses == [503] and slowest <= 16,
          f"PostgreSQL hanging for {seconds} s: {len(answered)} requests answered meanwhile, "
          f"all {statuses}, the slowest after {slowest:.1f} s (REQUEST_TIMEOUT_SECS 15 bounds a "
          f"statement on a held connection, the pool's 5 s a new one)")
    check(ready[0] == 503 and ready[1] < 3,
          f"readiness says postgres is down within {ready[1]:.1f} s of asking ({ready[0]})")
    check(back and min(back) - resumed < 5,
          f"2xx resumed {(min(back) - resumed) if back else float('inf'):.1f} s after it answered again")


def redis_faults(args, accounts, seconds):
    """Redis stopped, then started empty; then hanging past the staleness bound: a token
    revoked before the outage is never accepted, one revoked during it not past the bound,
    valid tokens fail closed once the denylist is stale and work again after, and logins go
    on (limits per process)."""
    valid = accounts.login(accounts.take()[0])["access_token"]
    before = accounts.login(accounts.take()[0])["access_token"]
    during_pair = accounts.login(accounts.take()[0])
    assert call(args.front, "POST", "/v1/auth/logout", token=before)[0] == 204
    revoked_seen = []
    valid_statuses = []

    def step(i):
        p = args.todo[i % len(args.todo)]
        base = f"http://127.0.0.1:{p}"
        for name, tok in (("before", before), ("during", during_pair["access_token"])):
            asked = time.monotonic()
            s = timed(base, "GET", "/v1/todos", token=tok)[0]
            revoked_seen.append((asked, name, s, p))
        asked = time.monotonic()
        s, secs, _ = timed(base, "GET", "/v1/todos", token=valid)
        valid_statuses.append((asked, s, secs))
        time.sleep(0.02)
    loop = Loop(len(args.todo), step)
    t_stop = t_back = t_hang = t_resume = None
    try:
        time.sleep(1)
        fault(args, "redis", "stop")
        t_stop = time.monotonic()
        status, _, _ = call(args.front, "POST", "/v1/auth/logout",
                            token=during_pair["access_token"])
        login_status = call(args.front, "POST", "/v1/auth/login",
                            {"email": accounts.take()[0], "password": PASSWORD},
                            source=source(8))[0]
        ready = [timed(f"http://127.0.0.1:{p}", "GET", "/readyz") for p in args.auth + args.todo]
        time.sleep(seconds)
        fault(args, "redis", "empty")
        t_back = time.monotonic()
        time.sleep(5)
        fault(args, "redis", "hang")
        t_hang = time.monotonic()
        hang_login = timed(args.front, "POST", "/v1/auth/login",
                           body={"email": accounts.take()[0], "password": PASSWORD},
                           source=source(10))
        time.sleep(STALENESS + 9)
    finally:
        fault(args, "redis", "resume")
        fault(args, "redis", "start")
        t_resume = time.monotonic()
        time.sleep(5)
        loop.finish()
    check(status == 204 and login_status == 200,
          f"with Redis stopped, logout ({status}) and login ({login_status}) still answer")
    check(all(s == 503 and "redis" in str(b) for s, _, b in ready),
          "readiness of every replica names redis while it is stopped")
    # A logout while Redis is down cannot reach the TODO replicas; they stop trusting their
    # denylist (503 for every token) once it is STALENESS seconds stale.
    bound = t_stop + STALENESS + 0.5
    # A hanging Redis is noticed by the TODO replicas' 1 s timeouts, a stopped one at once:
    # the last good probe may come up to 2 s after the hang begins (1 s apart, 1 s timeout),
    # and the suite's load on two cores delays timers by seconds more (CI saw the first 503
    # 8.1 s after the hang, and once a 200 9.6 s after it). The hang lasts 14 s; from 11 s on
    # every answer must be 503, and the message says when the first came.
    hang_bound = t_hang + STALENESS + 6
    accepted = [(round(t - t_stop, 1), name, p) for t, name, s, p in revoked_seen
                if s == 200 and (name == "before" or t > bound)]
    during_window = [s for t, name, s, p in revoked_seen if name == "during" and t <= bound]
    check(not accepted,
          f"a token revoked before the outage was never accepted by a TODO replica through "
          f"stop, empty restart and hang, nor one revoked during it past the {STALENESS} s "
          f"staleness bound (accepted: {accepted[:3]}; within the bound it got "
          f"{sorted(set(during_window))})")
    stale = [s for t, s, _ in valid_statuses if t_stop + STALENESS + 1 < t < t_back]
    recovered = [t for t, s, _ in valid_statuses if t > t_back and s == 200]
    check(stale and set(stale) == {503},
          f"a valid token fails closed (503) once the denylist is stale past its {STALENESS} s "
          f"bound ({sorted(set(stale))})")
    check(recovered and min(recovered) - t_back < 5,
          f"and works again {(min(recovered) - t_back) if recovered else float('inf'):.1f} s "
          f"after Redis is back empty (the auth service replays the denylist)")
    early = [s for t, s, _ in valid_statuses if t_hang < t < t_hang + 1]
    late = [s for t, s, _ in valid_statuses if hang_bound < t < t_resume]
    hang_slowest = max((secs for t, s, secs in valid_statuses if t_hang < t < t_resume), default=0)
    first_503 = min((t - t_hang for t, s, _ in valid_statuses if t_hang < t < t_resume and s == 503),
                    default=float("inf"))
    check(early and set(early) == {200} and late and set(late) == {503} and hang_slowest < 1.0
          and hang_login[0] == 200,
          f"Redis hanging: TODO requests answered 200 at first, 503 past the staleness bound "
          f"({sorted(set(early))} then {sorted(set(late))}; the first 503 {first_503:.1f} s "
          f"after the hang), none slower than "
          f"{hang_slowest * 1000:.0f} ms; a login meanwhile answered {hang_login[0]}")
