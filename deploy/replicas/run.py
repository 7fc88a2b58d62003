#!/usr/bin/env python3
"""The suite of `deploy/dev replicas`: what must hold across replicas of both services behind
nginx (rate limits and throttling shared, revocation reaching every TODO replica, a rotated
key accepted everywhere, one winner of a refresh race spread across auth replicas), and
every replica restarted one at a time under continuous mixed load with no failed request.

Clients get addresses of their own on loopback (127.0.x.y as the source address), so nginx
writes a different client into X-Forwarded-For for each, as it would for users elsewhere.
Standard library only, plus wrk for the load. Exits non-zero when a check fails."""

import argparse
import base64
import concurrent.futures
import http.client
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

PASSWORD = "replicas-correct-horse-battery"
HERE = os.path.dirname(os.path.abspath(__file__))

# The mixed load's script is the benchmark's (an SPA's traffic, refreshes replacing tokens).
_spec = importlib.util.spec_from_file_location("bench", os.path.join(HERE, "..", "bench", "run.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

failures = []
report = []


def check(ok, what):
    line = f"{'ok  ' if ok else 'FAIL'} {what}"
    print(line, flush=True)
    report.append(f"- {'ok' if ok else '**FAIL**'}: {what}")
    if not ok:
        failures.append(what)


def call(base, method, path, body=None, token=None, source=None, headers=None):
    """One request on a connection of its own: (status, parsed body, headers)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30,
                                      source_address=(source, 0) if source else None)
    hdrs = {"content-type": "application/json"}
    if token:
        hdrs["authorization"] = f"Bearer {token}"
    hdrs.update(headers or {})
    try:
        conn.request(method, path, None if body is None else json.dumps(body), hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return resp.status, parsed, dict(resp.getheaders())
    finally:
        conn.close()


def source(n):
    """The n-th client address (127.0.1.0 upwards; 127.0.0.1 is nginx, the trusted proxy)."""
    return f"127.0.{1 + n // 250}.{n % 250 + 1}"


def kid_of(token):
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]


def psql(args, sql):
    out = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                          f"{args.pg}/{args.auth_db}", "-c", sql],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


class Accounts:
    """Accounts made once: one signed up through the API, the rest copies of it made in
    PostgreSQL (the same password hash, so their signups' hashing is not paid again), each
    logged in from an address of its own batch (the per-address login limit is 30/60s)."""

    def __init__(self, args, n):
        self.args = args
        tag = uuid.uuid4().hex[:8]
        first = f"replicas-{tag}-0@example.com"
        status, body, _ = call(args.front, "POST", "/v1/auth/signup",
                               {"email": first, "password": PASSWORD}, source=source(0))
        assert status == 201, (status, body)
        psql(args, f"""INSERT INTO users (id, email, password_hash)
            SELECT gen_random_uuid(), 'replicas-{tag}-' || g || '@example.com', u.password_hash
            FROM generate_series(1, {n - 1}) g, users u WHERE u.email = '{first}'""")
        self.free = [f"replicas-{tag}-{i}@example.com" for i in range(n)]
        self.next_source = 1000
        self.lock = threading.Lock()

    def take(self, n=1):
        with self.lock:
            out, self.free = self.free[:n], self.free[n:]
            assert len(out) == n, "the suite ran out of accounts"
            return out

    def login(self, email, at=None):
        with self.lock:
            self.next_source += 1
            src = source(self.next_source // 20)
        status, body, _ = call(at or self.args.front, "POST", "/v1/auth/login",
                               {"email": email, "password": PASSWORD}, source=src)
        assert status == 200, (email, status, body)
        return body


def metric_sum(port, name, label_match):
    status, text, _ = call(f"http://127.0.0.1:{port}", "GET", "/metrics")
    assert status == 200
    total = 0.0
    for line in str(text).splitlines():
        if line.startswith(name + "{") and label_match in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def rate_limits(args, accounts):
    """The per-address login limit (30 a minute) is one budget across every replica, a
    client-written X-Forwarded-For gets no fresh one, and another address is unaffected."""
    before = [metric_sum(p, "http_requests_total", 'route="login"') for p in args.auth]
    src = source(3)
    statuses = []
    started = time.monotonic()
    for i in range(36):
        email = f"nobody-{uuid.uuid4().hex}@example.com"
        status, _, _ = call(args.front, "POST", "/v1/auth/login",
                            {"email": email, "password": "wrong password here"}, source=src,
                            headers={"X-Forwarded-For": f"198.51.100.{i}"})
        statuses.append(status)
    elapsed = time.monotonic() - started
    after = [metric_sum(p, "http_requests_total", 'route="login"') for p in args.auth]
    served = [a - b for a, b in zip(after, before)]
    answered, refused = statuses.count(401), statuses.count(429)
    # One token back every 2 s while the attempts run.
    allowed = 30 + int(elapsed / 2) + 1
    check(answered + refused == 36 and 30 <= answered <= allowed and refused >= 36 - allowed,
          f"per-address login limit shared by {len(args.auth)} auth replicas: {answered} of 36 "
          f"answered, {refused} refused with 429 (budget 30 a minute, {elapsed:.1f} s), each "
          f"with a new client-written X-Forwarded-For; served per replica {served}")
    check(all(s > 0 for s in served), "nginx spread the attempts over every auth replica")
    status, _, _ = call(args.front, "POST", "/v1/auth/login",
                        {"email": accounts.take()[0], "password": PASSWORD}, source=source(4))
    check(status == 200, f"another address logs in meanwhile ({status})")


def throttling(args, accounts):
    """Five failures for an account from one address make that address wait, at every
    replica; another address still logs in."""
    email = accounts.take()[0]
    src = source(5)
    statuses = [call(args.front, "POST", "/v1/auth/login",
                     {"email": email, "password": "not the password"}, source=src)[0]
                for _ in range(5)]
    right = [call(f"http://127.0.0.1:{p}", "POST", "/v1/auth/login",
                  {"email": email, "password": PASSWORD},
                  headers={"X-Forwarded-For": src})[0] for p in args.auth]
    check(statuses == [401] * 5 and right == [429] * len(args.auth),
          f"after 5 failures from one address the right password waits at every auth replica "
          f"({statuses} then {right})")
    status, _, _ = call(args.front, "POST", "/v1/auth/login",
                        {"email": email, "password": PASSWORD}, source=source(6))
    check(status == 200, f"the owner elsewhere logs in ({status})")


def revocation(args, accounts, rounds):
    """After logout's 204, every TODO replica refuses the access token within a second."""
    worst = 0.0
    for email in accounts.take(rounds):
        pair = accounts.login(email)
        token = pair["access_token"]
        for p in args.todo:
            status, _, _ = call(f"http://127.0.0.1:{p}", "GET", "/v1/todos", token=token)
            assert status == 200, status
        status, _, _ = call(args.front, "POST", "/v1/auth/logout", token=token)
        assert status == 204, status
        t0 = time.monotonic()

        def until_refused(port):
            while True:
                status, _, _ = call(f"http://127.0.0.1:{port}", "GET", "/v1/todos", token=token)
                if status == 401:
                    return time.monotonic() - t0
                if time.monotonic() - t0 > 5:
                    return float("inf")
                time.sleep(0.01)
        with concurrent.futures.ThreadPoolExecutor(len(args.todo)) as pool:
            worst = max(worst, *pool.map(until_refused, args.todo))
    check(worst <= 1.0, f"revocation reached all {len(args.todo)} TODO replicas within "
          f"{worst * 1000:.0f} ms at worst over {rounds} logouts (bound 1 s)")


def refresh_races(args, accounts, rounds, per_replica=3):
    """One refresh token sent at once to every auth replica, several times each: exactly
    one rotation, every other answer a 401 naming reuse, and one successor in the table."""
    outcomes = []
    for email in accounts.take(rounds):
        pair = accounts.login(email)
        barrier = threading.Barrier(per_replica * len(args.auth))

        def one(port):
            barrier.wait()
            status, body, _ = call(f"http://127.0.0.1:{port}", "POST", "/v1/auth/refresh",
                                   {"refresh_token": pair["refresh_token"]})
            return status, (body or {}).get("code") if isinstance(body, dict) else None
        ports = [p for p in args.auth for _ in range(per_replica)]
        with concurrent.futures.ThreadPoolExecutor(len(ports)) as pool:
            answers = list(pool.map(one, ports))
        rows = int(psql(args, f"SELECT count(*) FROM refresh_tokens "
                              f"WHERE session_id = '{pair['session_id']}'"))
        won = sum(1 for s, _ in answers if s == 200)
        reused = sum(1 for s, c in answers if s == 401 and c == "REFRESH_TOKEN_REUSED")
        outcomes.append((won, reused, rows))
    n = per_replica * len(args.auth)
    check(all(w == 1 and r == n - 1 and rows == 2 for w, r, rows in outcomes),
          f"{rounds} refresh races of {n} requests spread over {len(args.auth)} auth replicas: "
          f"exactly one winner each, the rest REFRESH_TOKEN_REUSED, one successor stored "
          f"(winners, reuse answers, stored tokens per race: {outcomes})")


def key_rotation(args, accounts):
    """`rotate-keys --now` against the shared database: every auth replica starts signing
    with the new key, and every TODO replica accepts each of its tokens the first time."""
    # One session per auth replica, refreshed there (a refresh mints an access token).
    chains = {p: accounts.login(accounts.take()[0], at=f"http://127.0.0.1:{p}") for p in args.auth}
    old = {kid_of(c["access_token"]) for c in chains.values()}
    assert len(old) == 1, old
    old = old.pop()
    run = subprocess.run([args.auth_bin, "rotate-keys", "--now"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    t0 = time.monotonic()
    first_new = {}
    refused = []
    while len(first_new) < len(args.auth) and time.monotonic() - t0 < 40:
        for p in args.auth:
            status, body, _ = call(f"http://127.0.0.1:{p}", "POST", "/v1/auth/refresh",
                                   {"refresh_token": chains[p]["refresh_token"]})
            assert status == 200, (status, body)
            chains[p] = body
            kid = kid_of(body["access_token"])
            for q in args.todo:
                status, _, _ = call(f"http://127.0.0.1:{q}", "GET", "/v1/todos",
                                    token=body["access_token"])
                if status != 200:
                    refused.append((p, q, kid == old, status))
            if kid != old and p not in first_new:
                first_new[p] = time.monotonic() - t0
        time.sleep(0.5)
    check(len(first_new) == len(args.auth),
          f"after rotate-keys --now every auth replica signed with the new key "
          f"(first token after {min(first_new.values(), default=0):.1f} s, the last replica "
          f"after {max(first_new.values(), default=float('inf')):.1f} s)")
    check(not refused, f"every token of either key was accepted by every TODO replica at "
          f"once (refused: {refused})")


def rolling_restart(args, accounts, users, rounds):
    """Every replica of both services restarted one at a time (SIGTERM, wait for it to
    exit, start, wait until ready), `rounds` times over, under continuous mixed load
    through nginx."""
    emails = accounts.take(users)

    def one(email):
        pair = accounts.login(email)
        status, created, _ = call(args.front, "POST", "/v1/todos", {"title": "rolling"},
                                  token=pair["access_token"])
        assert status == 201, (status, created)
        return pair, created["id"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        sessions = list(pool.map(one, emails))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(bench.lua_mixed(sessions))
    wrk = subprocess.Popen(["wrk", "-t2", "-c16", "-d600s", "-s", f.name, args.front],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    restarted = []
    for service, ports in [("auth", args.auth), ("todo", args.todo)] * rounds:
        for i in range(1, len(ports) + 1):
            t = time.monotonic()
            run = subprocess.run(args.restart.split() + [f"{service}-{i}"],
                                 capture_output=True, text=True)
            if run.returncode != 0:
                print(run.stdout, run.stderr, file=sys.stderr)
            if run.returncode != 0:
                check(False, f"restarting {service}-{i}")
            restarted.append(f"{service}-{i} ({time.monotonic() - t:.1f} s)")
    time.sleep(2)
    wrk.send_signal(signal.SIGINT)
    out, err = wrk.communicate(timeout=30)
    os.unlink(f.name)
    total = re.search(r"(\d+) requests in ([\d.]+)s", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    requests, seconds = (int(total.group(1)), float(total.group(2))) if total else (0, 0)
    check(requests > 0 and not bad and not sock,
          f"{requests} requests of mixed load through nginx over {seconds:.0f} s while "
          f"{len(restarted)} restarts, one at a time (each: stop, start, ready, nginx's fail_timeout): "
          f"{', '.join(restarted)}: "
          f"{bad.group(1) if bad else 0} failed, socket errors: {sock.group(1) if sock else 'none'}")
    if bad or sock or not total:
        print(out, err, file=sys.stderr)


PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "job", "instance", "le",
                "route", "status", "reason", "kind", "state", "op", "and", "or", "unless",
                "on", "without", "max", "min", "up", "avg", "count"}


def metrics_named(text):
    """The metric names a PromQL-bearing file refers to (strings in its exprs)."""
    exprs = re.findall(r'expr"?:\s*"?(.*?)(?:"?,?$)', text, re.M)
    exprs += re.findall(r'expr: >\n((?:\s{10,}.*\n)+)', text)
    names = set()
    for e in exprs:
        e = re.sub(r'"[^"]*"', "", e)
        e = re.sub(r"\[[0-9a-z]+\]", "", e)
        for word in re.findall(r"[a-z_][a-z0-9_]*", e):
            if word not in PROMQL_WORDS:
                names.add(word.removesuffix("_bucket"))
    return names


def metrics_exist(args):
    """Every metric an alert rule or the dashboard names is exposed by some replica."""
    exposed = set()
    for p in args.auth + args.todo:
        status, text, _ = call(f"http://127.0.0.1:{p}", "GET", "/metrics")
        assert status == 200, status
        exposed |= set(re.findall(r"^# TYPE (\S+)", str(text), re.M))
    root = os.path.join(HERE, "..")
    for path in ("prometheus/alerts.yml", "grafana/dashboard.json"):
        with open(os.path.join(root, path)) as f:
            named = metrics_named(f.read())
        missing = sorted(named - exposed)
        check(named and not missing, f"{len(named)} metrics named in deploy/{path} are all exposed "
              f"(missing: {missing or 'none'})")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--front", required=True)
    p.add_argument("--auth-ports", required=True)
    p.add_argument("--todo-ports", required=True)
    p.add_argument("--pg", required=True)
    p.add_argument("--auth-db", required=True)
    p.add_argument("--auth-bin", required=True)
    p.add_argument("--restart", required=True)
    p.add_argument("--report", required=True)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    args.auth = [int(x) for x in args.auth_ports.split()]
    args.todo = [int(x) for x in args.todo_ports.split()]
    rounds, users, restarts = (3, 40, 1) if args.quick else (10, 200, 3)
    accounts = Accounts(args, 5 * rounds + users + 20)
    started = time.monotonic()
    for name, run in [("rate limits", lambda: rate_limits(args, accounts)),
                      ("throttling", lambda: throttling(args, accounts)),
                      ("revocation", lambda: revocation(args, accounts, rounds)),
                      ("refresh races", lambda: refresh_races(args, accounts, rounds)),
                      ("key rotation", lambda: key_rotation(args, accounts)),
                      ("rolling restart", lambda: rolling_restart(args, accounts, users, restarts)),
                      ("metrics", lambda: metrics_exist(args))]:
        print(f"-- {name}", flush=True)
        report.append(f"\n### {name}\n")
        try:
            run()
        except Exception as err:  # a broken step fails the suite with its reason
            check(False, f"{name}: {type(err).__name__}: {err}")
    summary = (f"# Replicas suite: {len(args.auth)} auth and {len(args.todo)} TODO replicas "
               f"behind nginx ({'quick' if args.quick else 'full'}, "
               f"{time.monotonic() - started:.0f} s)\n")
    with open(args.report, "w") as f:
        f.write(summary + "\n".join(report) + "\n")
    print(f"replicas: report in {args.report}")
    if failures:
        sys.exit(f"replicas: {len(failures)} check(s) failed")


if __name__ == "__main__":
    main()
