#!/usr/bin/env python3
"""The load side of `deploy/dev bench`: scenarios driven by wrk against a running stack,
and PostgreSQL's own rates (pgbench, same server, same concurrency) measured in the same run,
interleaved with the scenarios because these machines drift. Prints a table and writes it to
--report. Standard library only."""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

PASSWORD = "bench-correct-horse-battery"
CONNECTIONS = 32
OWNERS = 32


def call(method, url, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def users(auth, n):
    """n new accounts, each logged in once: their emails and token pairs."""
    out = []
    for _ in range(n):
        email = f"bench-{uuid.uuid4().hex}@example.com"
        status, body = call("POST", f"{auth}/v1/auth/signup", {"email": email, "password": PASSWORD})
        assert status == 201, (status, body)
        out.append((email, login(auth, email)))
    return out


def login(auth, email):
    status, body = call("POST", f"{auth}/v1/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200, (status, body)
    return body


def lua(tokens, method, paths, body=None):
    """A wrk script: each request takes the next token (and path) in turn."""
    quoted = ", ".join(json.dumps(t) for t in tokens)
    path_list = ", ".join(json.dumps(p) for p in paths)
    body_line = f"wrk.body = {json.dumps(json.dumps(body))}" if body is not None else ""
    return f"""
local tokens = {{{quoted}}}
local paths = {{{path_list}}}
local i = 0
wrk.method = "{method}"
wrk.headers["Content-Type"] = "application/json"
{body_line}
request = function()
  i = i + 1
  local h = {{["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1], ["Content-Type"] = "application/json"}}
  return wrk.format(nil, paths[(i % #paths) + 1], h)
end
"""


def lua_rotating(items, make_request, take_from_response):
    """A wrk script whose requests each spend one item of a pool (a refresh token, a todo
    with its version) that the response gives back renewed. Each wrk thread has its own
    share of the pool, larger than its connections, so the pool never runs dry."""
    quoted = ", ".join(json.dumps(i) for i in items)
    return f"""
local all = {{{quoted}}}
local threads = 0
function setup(thread)
  thread:set("index", threads)
  threads = threads + 1
end
local pool = {{}}
function init(args)
  for k, item in ipairs(all) do
    if k % 2 == index then table.insert(pool, item) end
  end
end
function request()
  local item = table.remove(pool, 1)
  {make_request}
end
function response(status, headers, body)
  {take_from_response}
end
"""


def lua_refresh(refresh_tokens):
    return lua_rotating(
        refresh_tokens,
        'return wrk.format("POST", "/v1/auth/refresh", {["Content-Type"] = "application/json"}, '
        '\'{"refresh_token":"\' .. item .. \'"}\')',
        'local t = body:match(\'"refresh_token":"([^"]+)"\')\n  if t then table.insert(pool, t) end',
    )


def lua_patch(token, todos):
    items = [f"{t['id']} {t['version']}" for t in todos]
    return lua_rotating(
        items,
        'local id, v = item:match("(%S+) (%S+)")\n'
        '  return wrk.format("PATCH", "/v1/todos/" .. id, {["Content-Type"] = "application/json", '
        f'["Authorization"] = "Bearer {token}", ["If-Match"] = \'"\' .. v .. \'"\'}}, '
        '\'{"done":true}\')',
        'local id = body:match(\'"id":"([^"]+)"\')\n'
        '  local v = body:match(\'"version":(%d+)\')\n'
        '  if id and v then table.insert(pool, id .. " " .. v) end',
    )


def lua_login(email):
    body = json.dumps({"email": email, "password": PASSWORD})
    return f"""
wrk.method = "POST"
wrk.path = "/v1/auth/login"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {json.dumps(body)}
"""


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        raise ValueError(f"not a wrk latency: {text!r}")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def wrk(url, script, seconds, pids):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    before = [cpu_seconds(p) for p in pids]
    run = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", f.name, url],
        capture_output=True, text=True,
    )
    out = run.stdout
    if run.returncode != 0:
        sys.exit(f"bench: wrk failed ({run.returncode}) on {url} with the script {f.name}:\n"
                 f"{run.stdout}\n{run.stderr}")
    after = [cpu_seconds(p) for p in pids]
    os.unlink(f.name)
    try:
        return parse_wrk(out, total_cpu=[a - b for a, b in zip(after, before)])
    except (AttributeError, ValueError) as err:
        sys.exit(f"bench: cannot read wrk's output ({err}):\n{out}")


def parse_wrk(out, total_cpu):
    total = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    sock = re.search(r"Socket errors: (.*)", out)
    cpu = [c * 1000 / max(total, 1) for c in total_cpu]
    return {"rps": rps, "p50": p50, "p99": p99, "errors": errors, "cpu": cpu,
            "socket": sock.group(1) if sock else ""}


def psql(pg, db, sql):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", f"{pg}/{db}", "-c", sql],
                   check=True, capture_output=True)


def pgbench(pg, db, script, seconds):
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    out = subprocess.run(
        ["pgbench", "-n", f"-c{CONNECTIONS}", "-j2", f"-T{seconds}", "-f", f.name, f"{pg}/{db}"],
        capture_output=True, text=True, check=True,
    ).stdout
    os.unlink(f.name)
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def grown(args, scenarios, small, seconds, pids, account, todo, build_scenarios):
    """Seed to production size, run every scenario again, and report p99 against the small
    data set's, and the plans of the hot queries."""
    import base64
    import grow
    started = time.time()
    grow.seed(args.pg, args.todo_db, args.auth_db)
    seeded_in = time.time() - started
    size = grow.sizes(args.pg, args.todo_db, args.auth_db)
    big = [wrk(url, script, seconds, pids) for _, url, script, _, _ in build_scenarios()]
    payload = account[1]["access_token"].split(".")[1]
    owner = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    plans = grow.explain(args.pg, args.todo_db, args.auth_db, owner, todo["id"], account[0])
    lines = [
        "",
        f"Grown (seeded in {seeded_in:.0f} s, straight into PostgreSQL): {size['todos']:,} todos, "
        f"{size['users']:,} accounts, {size['sessions']:,} sessions, "
        f"{size['refresh_tokens']:,} refresh tokens. Every scenario again:",
        "",
        "| scenario | req/s small | req/s grown | p99 ms small | p99 ms grown | p99 grown / small | within 1.5x |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for (name, *_), a, b in zip(scenarios, small, big):
        ratio = b["p99"] / a["p99"] if a["p99"] else float("inf")
        lines.append(f"| {name} | {a['rps']:,.0f} | {b['rps']:,.0f} | {a['p99']:.1f} | "
                     f"{b['p99']:.1f} | {ratio:.2f} | {'yes' if ratio <= 1.5 else 'NO'} |")
    lines += ["", "Plans of the hot queries at that size (EXPLAIN ANALYZE, BUFFERS):", ""]
    for name, plan in plans.items():
        lines += [f"{name}:", "", "```", plan.rstrip(), "```", ""]
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--auth", required=True)
    ap.add_argument("--todo", required=True)
    ap.add_argument("--pg", required=True, help="PostgreSQL URL without a database")
    ap.add_argument("--todo-db", required=True)
    ap.add_argument("--pids", required=True, help="the auth and TODO services' pid files")
    ap.add_argument("--report", required=True)
    ap.add_argument("--auth-db", required=True)
    ap.add_argument("--grow", action="store_true",
                    help="then seed a million todos, sessions and refresh tokens straight into "
                         "PostgreSQL, run every scenario again, and show the hot queries' plans")
    ap.add_argument("--argon2", required=True,
                    help="the argon2_rate example: argon2id alone on every core, hashes/s")
    ap.add_argument("--quick", action="store_true", help="5 s per scenario")
    ap.add_argument("--smoke", action="store_true",
                    help="2 s per scenario on a debug build (CI): the harness runs and every "
                         "scenario answers as it should; the figures mean nothing")
    args = ap.parse_args()
    seconds = 2 if args.smoke else 5 if args.quick else 20
    pids = [int(open(p).read().strip()) for p in args.pids.split(",")]

    # PostgreSQL's own rates, on a table shaped like todos (same indexes), in a scratch database.
    scratch = "bench_limits"
    subprocess.run(["psql", "-q", f"{args.pg}/postgres", "-c", f"DROP DATABASE IF EXISTS {scratch}"],
                   check=True, capture_output=True)
    subprocess.run(["psql", "-q", f"{args.pg}/postgres", "-c", f"CREATE DATABASE {scratch}"],
                   check=True, capture_output=True)
    psql(args.pg, scratch, """
        CREATE TABLE rows (id uuid PRIMARY KEY, owner_id text NOT NULL, title text NOT NULL,
          description text, done boolean NOT NULL DEFAULT false, due_at timestamptz,
          version bigint NOT NULL DEFAULT 1, created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(), n bigint UNIQUE);
        CREATE INDEX ON rows (owner_id, created_at, id);
        CREATE INDEX ON rows (owner_id, due_at, id);
        CREATE INDEX ON rows (created_at, id);
        INSERT INTO rows (id, owner_id, title, n)
          SELECT gen_random_uuid(), 'o' || (g % 32), 'seed', g FROM generate_series(1, 10000) g;
        ANALYZE rows;""")
    insert_sql = ("INSERT INTO rows (id, owner_id, title) "
                  "VALUES (gen_random_uuid(), 'o' || (random() * 31)::int, 'bench');\n")
    select_sql = "\\set n random(1, 10000)\nSELECT * FROM rows WHERE n = :n;\n"

    def limits():
        argon2 = float(subprocess.run([args.argon2, str(min(seconds, 10))], capture_output=True,
                                      text=True, check=True).stdout)
        return {"insert": pgbench(args.pg, scratch, insert_sql, seconds),
                "select": pgbench(args.pg, scratch, select_sql, seconds),
                "argon2": argon2}

    accounts = users(args.auth, OWNERS)
    tokens = [pair["access_token"] for _, pair in accounts]
    todos = []
    for i in range(128):
        status, todo = call("POST", f"{args.todo}/v1/todos", {"title": f"seed {i}"}, tokens[0])
        assert status == 201, (status, todo)
        todos.append(todo)
    refreshers = users(args.auth, 4)
    # Logins of an account of its own too (each login past the session cap ends its oldest).
    login_account = users(args.auth, 1)[0][0]

    def build_scenarios():
        """The scenarios with fresh state: refresh tokens not yet spent, and the todos'
        current versions (each run spends the one and moves the other on)."""
        # Sessions to refresh, more than the connections (each refresh spends one token), of
        # accounts of their own: a user past AUTH_MAX_SESSIONS_PER_USER loses the oldest
        # sessions, and with them the tokens the other scenarios use.
        refresh_tokens = [login(args.auth, email)["refresh_token"]
                          for email, _ in refreshers for _ in range(CONNECTIONS)]
        current = [call("GET", f"{args.todo}/v1/todos/{t['id']}", token=tokens[0])[1]
                   for t in todos]
        one = tokens[:1]
        by_id = [f"/v1/todos/{t['id']}" for t in todos[:100]]
        # (name, service, wrk script, the limit it is held against, floor)
        return [
            ("login", args.auth, lua_login(login_account), "argon2", 0.85),
            ("refresh", args.auth, lua_refresh(refresh_tokens), "insert", 0.25),
            ("POST /v1/todos, one owner", args.todo, lua(one, "POST", ["/v1/todos"], {"title": "bench"}), "insert", 0.40),
            (f"POST /v1/todos, {OWNERS} owners", args.todo, lua(tokens, "POST", ["/v1/todos"], {"title": "bench"}), "insert", 0.40),
            ("PATCH /v1/todos/{id} with If-Match", args.todo, lua_patch(tokens[0], current), "insert", None),
            ("GET /v1/todos/{id}", args.todo, lua(one, "GET", by_id), "select", 0.25),
            ("GET /v1/todos?limit=20", args.todo, lua(one, "GET", ["/v1/todos?limit=20"]), "select", 0.15),
            ("GET /v1/todos?limit=100", args.todo, lua(one, "GET", ["/v1/todos?limit=100"]), "select", 0.05),
            ("bad token", args.todo, lua(["not.a.token"], "GET", by_id), "by id", 2.0),
        ]

    scenarios = build_scenarios()
    first = limits()
    results = []
    for _, url, script, _, _ in scenarios:
        results.append(wrk(url, script, seconds, pids))
    last = limits()
    limit = {k: (first[k] + last[k]) / 2 for k in first}
    limit["by id"] = results[[n for n, *_ in scenarios].index("GET /v1/todos/{id}")]["rps"]
    bound = {"insert": "of pgbench insert", "select": "of pgbench select",
             "argon2": "of argon2 alone", "by id": "x GET by id"}

    lines = [
        *(["SMOKE RUN on a debug build: these figures are not a benchmark.", ""] if args.smoke else []),
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.platform()}; {seconds} s per scenario, wrk -c{CONNECTIONS}.",
        f"Limits measured before and after the scenarios: PostgreSQL alone (pgbench "
        f"-c{CONNECTIONS}, same server) single-row insert {limit['insert']:,.0f} tps (runs: "
        f"{first['insert']:,.0f}, {last['insert']:,.0f}), point select {limit['select']:,.0f} tps "
        f"(runs: {first['select']:,.0f}, {last['select']:,.0f}); argon2id alone on every core at "
        f"the configured parameters {limit['argon2']:,.1f} hashes/s (runs: {first['argon2']:,.1f}, "
        f"{last['argon2']:,.1f}).",
        "",
        "| scenario | req/s | p50 ms | p99 ms | non-2xx | CPU ms/req auth, todo | ratio to its limit | floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, _, _, kind, floor), r in zip(scenarios, results):
        ratio = r["rps"] / limit[kind]
        shown_ratio = f"{ratio:.2f}{bound[kind]}" if kind == "by id" else f"{ratio:.0%} {bound[kind]}"
        if floor is None:
            shown_floor, met = "none set", ""
        else:
            shown_floor = f"{floor:.1f}x" if kind == "by id" else f"{floor:.0%}"
            met = "" if ratio >= floor else " (below)"
        expected_errors = name == "bad token"
        errors = "all (401)" if expected_errors and r["errors"] else str(r["errors"])
        lines.append(
            f"| {name} | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {errors} | "
            f"{r['cpu'][0]:.2f}, {r['cpu'][1]:.2f} | {shown_ratio}{met} | {shown_floor} |"
        )
    if args.grow:
        lines += grown(args, scenarios, results, seconds, pids, accounts[0], todos[0],
                       build_scenarios)
    lines.append("")
    lines.append(f"Peak RSS: auth-service {peak_rss_mib(pids[0]):.0f} MiB, "
                 f"todo-service {peak_rss_mib(pids[1]):.0f} MiB.")
    report = "\n".join(lines)
    print(report)
    with open(args.report, "w") as f:
        f.write(report + "\n")
    failures = [n for (n, *_), r in zip(scenarios, results)
                if r["errors"] and n != "bad token"]
    if failures:
        print(f"bench: unexpected error answers in: {', '.join(failures)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
