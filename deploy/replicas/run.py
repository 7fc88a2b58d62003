#!/usr/bin/env python3
"""The suite of `deploy/dev replicas`: what must hold across replicas of both services behind
nginx (rate limits and throttling shared, revocation reaching every TODO replica, a rotated
key accepted everywhere, one winner of a refresh race spread across auth replicas), and
every replica restarted one at a time under continuous mixed load with no failed request.

Then the faults (faults.py). Clients get addresses of their own on loopback (127.0.x.y as
the source address), so nginx writes a different client into X-Forwarded-For for each, as it
would for users elsewhere. Standard library only, plus wrk for the load. Exits non-zero when
a check fails."""

import argparse
import sys
import time

import common
from across import (key_rotation, metrics_exist, rate_limits, refresh_races, revocation,
                    rolling_restart, throttling)
from common import Accounts, check
from faults import auth_outage, kill_mid_refresh, postgres_hang, postgres_outage, redis_faults


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--front", required=True)
    p.add_argument("--auth-ports", required=True)
    p.add_argument("--todo-ports", required=True)
    p.add_argument("--pg", required=True)
    p.add_argument("--auth-db", required=True)
    p.add_argument("--auth-bin", required=True)
    p.add_argument("--restart", required=True)
    p.add_argument("--fault", required=True)
    p.add_argument("--todo-db", required=True)
    p.add_argument("--report", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", help="run only the steps whose names contain one of these (a,b)")
    args = p.parse_args()
    args.auth = [int(x) for x in args.auth_ports.split()]
    args.todo = [int(x) for x in args.todo_ports.split()]
    rounds, users, restarts, outage = (3, 40, 1, 8) if args.quick else (10, 200, 3, 20)
    # The outage's logins take a new account each (a few a second).
    accounts = Accounts(args, 5 * rounds + users + 60 + 20 * outage)
    started = time.monotonic()
    for name, run in [("rate limits", lambda: rate_limits(args, accounts)),
                      ("throttling", lambda: throttling(args, accounts)),
                      ("revocation", lambda: revocation(args, accounts, rounds)),
                      ("refresh races", lambda: refresh_races(args, accounts, rounds)),
                      ("key rotation", lambda: key_rotation(args, accounts)),
                      ("rolling restart", lambda: rolling_restart(args, accounts, users, restarts)),
                      ("auth service stopped", lambda: auth_outage(args, accounts)),
                      ("kill -9 amid refreshes", lambda: kill_mid_refresh(args, accounts, 12)),
                      ("PostgreSQL stopped", lambda: postgres_outage(args, accounts, outage)),
                      ("PostgreSQL hanging", lambda: postgres_hang(args, accounts, 18)),
                      ("Redis stopped, emptied, hanging", lambda: redis_faults(args, accounts, outage)),
                      ("metrics", lambda: metrics_exist(args))]:
        if args.only and not any(o in name for o in args.only.split(",")):
            continue
        print(f"-- {name}", flush=True)
        common.report.append(f"\n### {name}\n")
        try:
            run()
        except Exception as err:  # a broken step fails the suite with its reason
            check(False, f"{name}: {type(err).__name__}: {err}")
    summary = (f"# Replicas suite: {len(args.auth)} auth and {len(args.todo)} TODO replicas "
               f"behind nginx ({'quick' if args.quick else 'full'}, "
               f"{time.monotonic() - started:.0f} s)\n")
    with open(args.report, "w") as f:
        f.write(summary + "\n".join(common.report) + "\n")
    print(f"replicas: report in {args.report}")
    if common.failures:
        sys.exit(f"replicas: {len(common.failures)} check(s) failed")


if __name__ == "__main__":
    main()
