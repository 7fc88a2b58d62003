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
    tokens = []
    for _ in range(n):
        email = f"bench-{uuid.uuid4().hex}@example.com"
        status, body = call("POST", f"{auth}/v1/auth/signup", {"email": email, "password": PASSWORD})
        assert status == 201, (status, body)
        status, body = call("POST", f"{auth}/v1/auth/login", {"email": email, "password": PASSWORD})
        assert status == 200, (status, body)
        tokens.append(body["access_token"])
    return tokens


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
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", f.name, url],
        capture_output=True, text=True, check=True,
    ).stdout
    after = [cpu_seconds(p) for p in pids]
    os.unlink(f.name)
    try:
        return parse_wrk(out, total_cpu=[a - b for a, b in zip(after, before)])
    except (AttributeError, ValueError) as err:
        sys.exit(f"bench: cannot read wrk's output ({err}):\n{out}")


def parse_wrk(out, total_cpu):
    total = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"99%\s+(\S+)", out).group(1))
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--auth", required=True)
    ap.add_argument("--todo", required=True)
    ap.add_argument("--pg", required=True, help="PostgreSQL URL without a database")
    ap.add_argument("--todo-db", required=True)
    ap.add_argument("--pids", required=True, help="the auth and TODO services' pid files")
    ap.add_argument("--report", required=True)
    ap.add_argument("--quick", action="store_true", help="5 s per scenario (CI)")
    args = ap.parse_args()
    seconds = 5 if args.quick else 20
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
        return pgbench(args.pg, scratch, insert_sql, seconds), pgbench(args.pg, scratch, select_sql, seconds)

    tokens = users(args.auth, OWNERS)
    ids = []
    for i in range(100):
        status, todo = call("POST", f"{args.todo}/v1/todos", {"title": f"seed {i}"}, tokens[0])
        assert status == 201, (status, todo)
        ids.append(todo["id"])
    one = tokens[:1]
    by_id = [f"/v1/todos/{i}" for i in ids]
    scenarios = [
        ("POST /v1/todos, one owner", lua(one, "POST", ["/v1/todos"], {"title": "bench"}), "insert", 0.40),
        (f"POST /v1/todos, {OWNERS} owners", lua(tokens, "POST", ["/v1/todos"], {"title": "bench"}), "insert", 0.40),
        ("GET /v1/todos/{id}", lua(one, "GET", by_id), "select", 0.25),
        ("GET /v1/todos?limit=20", lua(one, "GET", ["/v1/todos?limit=20"]), "select", 0.15),
        ("GET /v1/todos?limit=100", lua(one, "GET", ["/v1/todos?limit=100"]), "select", 0.05),
        ("bad token", lua(["not.a.token"], "GET", by_id), None, None),
    ]
    first = limits()
    results = []
    for name, script, _, _ in scenarios:
        results.append(wrk(args.todo, script, seconds, pids))
    last = limits()
    insert_tps = (first[0] + last[0]) / 2
    select_tps = (first[1] + last[1]) / 2
    get_by_id = results[2]["rps"]

    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.platform()}; {seconds} s per scenario, wrk -c{CONNECTIONS}.",
        f"PostgreSQL alone (pgbench -c{CONNECTIONS}, same server): single-row insert "
        f"{insert_tps:,.0f} tps (runs: {first[0]:,.0f}, {last[0]:,.0f}); point select "
        f"{select_tps:,.0f} tps (runs: {first[1]:,.0f}, {last[1]:,.0f}).",
        "",
        "| scenario | req/s | p50 ms | p99 ms | non-2xx | CPU ms/req auth, todo | ratio to its limit | floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, _, limit, floor), r in zip(scenarios, results):
        if limit == "insert":
            ratio, bound = r["rps"] / insert_tps, "of pgbench insert"
        elif limit == "select":
            ratio, bound = r["rps"] / select_tps, "of pgbench select"
        else:
            ratio, bound, floor = r["rps"] / get_by_id, "x GET by id", 2.0
        shown_ratio = f"{ratio:.2f} {bound}" if limit is None else f"{ratio:.0%} {bound}"
        shown_floor = f"{floor:.0%}" if limit else f"{floor:.1f}x"
        met = "" if ratio >= floor else " (below)"
        expected_errors = name == "bad token"
        errors = "all (401)" if expected_errors and r["errors"] else str(r["errors"])
        lines.append(
            f"| {name} | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {errors} | "
            f"{r['cpu'][0]:.2f}, {r['cpu'][1]:.2f} | {shown_ratio}{met} | {shown_floor} |"
        )
    lines.append("")
    lines.append(f"Peak RSS: auth-service {peak_rss_mib(pids[0]):.0f} MiB, "
                 f"todo-service {peak_rss_mib(pids[1]):.0f} MiB.")
    report = "\n".join(lines)
    print(report)
    with open(args.report, "w") as f:
        f.write(report + "\n")
    failures = [n for (n, _, _, _), r in zip(scenarios, results)
                if r["errors"] and n != "bad token"]
    if failures:
        print(f"bench: unexpected error answers in: {', '.join(failures)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
