"""`python idle_guard.pyz check|install|uninstall ...`: the guard's command line."""

from __future__ import annotations

import argparse
import sys

from .guard import check, load_json
from .install import LOG, PLAN, PLAN_KEYS, SLURM_PATH, STATE, install, uninstall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="idle-guard", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("check", help="one round: power off once idle long enough")
    run.add_argument("--idle-minutes", type=float, required=True)
    run.add_argument("--plan", default=PLAN, help="what to ask Slurm (JSON, from hpcrun)")
    run.add_argument("--state", default=STATE, help="the guard's memory (JSON)")
    run.add_argument("--log", default=LOG, help="a line per round is appended here")
    run.add_argument(
        "--action",
        default=None,
        help="shell command run instead of powering off (also HPCRUN_IDLE_ACTION)",
    )
    run.add_argument("--dry-run", action="store_true", help="say what it would do, do nothing")
    put = commands.add_parser("install", help="run `check` every 5 minutes (systemd or cron)")
    put.add_argument("--idle-minutes", type=int, required=True)
    put.add_argument("--plan", default=PLAN, help="what to ask Slurm (JSON, from hpcrun)")
    put.add_argument("--slurm-path", default=SLURM_PATH)
    put.add_argument("--slurm-conf", default=None)
    put.add_argument("--python", default=None)
    put.add_argument("--root", default="/", help="write under this directory, enable nothing")
    put.add_argument("--scheduler", choices=["auto", "systemd", "cron"], default="auto")
    remove = commands.add_parser("uninstall", help="remove the timer or cron entry")
    remove.add_argument("--root", default="/")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "check":
        plan = load_json(args.plan)
        missing = [k for k in PLAN_KEYS if k not in plan]
        if missing:
            print(f"{args.plan}: not the guard's plan (no {', '.join(missing)})", file=sys.stderr)
            return 2
        check(
            args.idle_minutes,
            plan=plan,
            state_path=args.state,
            log_path=args.log or None,
            action=args.action,
            dry_run=args.dry_run,
        )
        return 0
    if args.command == "install":
        print(
            install(
                args.idle_minutes,
                plan=args.plan,
                python=args.python,
                slurm_path=args.slurm_path,
                slurm_conf=args.slurm_conf,
                root=args.root,
                scheduler=args.scheduler,
            )
        )
        return 0
    if args.command == "uninstall":
        print(uninstall(args.root))
        return 0
    parser.print_help(sys.stderr)
    return 2
