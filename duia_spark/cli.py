"""`duia <stage> [--conf FILE] [--set key=value] [--lakehouse PATH] [--date D] ...`

The same flags work for `spark-submit jobs/<stage>.py ...`. Relative paths on the command
line are taken from the current directory. A command for a date holds that date's run
lease while it runs (`run_lease.py`): a second command for the same date refuses at once
with exit code 3.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

from duia_spark.config import Config, ConfigError, anchor_path, load_config
from duia_spark.quiet import quiet_logs
from duia_spark.run_lease import (
    LeaseError,
    LeaseHeldError,
    hold_run_leases,
    lease_store,
    lost_leases,
)
from duia_spark.session import build_spark_session
from duia_spark.stages import STAGE_MODULES, load_stage

# `generate` writes raw drops, not the lakehouse: it takes no lease.
UNLEASED_STAGES = ("generate",)
# Flags naming a local file or folder: a relative one is taken from the current directory
# (a URI stays as it is), as load_config takes --set paths; --conf is found by load_config,
# which also knows the shipped configs by name (`--conf demo`).
PATH_FLAGS = ("lakehouse", "path", "out", "raw", "candidate_table")
EXIT_LEASE = 3  # another live run holds the date, or took this run's lease over


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {value!r}") from e


def _common_arguments() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("common options")
    g.add_argument(
        "--conf",
        help="YAML file deep-merged over the defaults, or a shipped config's name: demo, "
        "kuairand, movielens",
    )
    g.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set activity.window_days=14 (repeatable)",
    )
    g.add_argument("--lakehouse", help="lakehouse root folder/URI (lakehouse.root)")
    g.add_argument(
        "--master", help="Spark master: local[*], spark://host:7077, yarn, k8s://... (spark.master)"
    )
    g.add_argument("--date", type=_date, help="the run date D, YYYY-MM-DD")
    g.add_argument(
        "--debug",
        action="store_true",
        help="show everything: full tracebacks on failure, and the other libraries' notices "
        "and progress bars that are filtered otherwise (quiet.py)",
    )
    g.add_argument(
        "--take-over-lease",
        action="store_true",
        help="take the date's run lease from a run that still holds it (only when that run "
        "is dead or must stop: it stops at its next heartbeat)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="duia", description="duia-spark: PLE + DUIA ranking pipeline on Spark"
    )
    sub = parser.add_subparsers(dest="stage", required=True, metavar="<stage>")
    common = _common_arguments()
    for name in STAGE_MODULES:
        mod = load_stage(name)
        sp = sub.add_parser(name, parents=[common], help=mod.HELP, description=mod.HELP)
        mod.add_arguments(sp)
    return parser


def failure_line(e: BaseException) -> str:
    """One line for a failure. A JVM error (Py4JJavaError) reads as its Java exception's
    first line, not the Java stack trace its text carries (that is printed by --debug)."""
    java = getattr(e, "java_exception", None)
    if java is not None:
        first = (str(java).strip().splitlines() or [""])[0]
        return f"{first} (--debug prints the Java stack trace)"
    return f"{type(e).__name__}: {e}"


def lease_dates(args: argparse.Namespace) -> list[dt.date]:
    """The dates a command runs for, each leased while it runs: --date, through
    --end-date where the stage has one (ingest, backfill). None without --date."""
    if args.stage in UNLEASED_STAGES or args.date is None:
        return []
    end = getattr(args, "end_date", None) or args.date
    return [args.date + dt.timedelta(days=i) for i in range(max(0, (end - args.date).days) + 1)]


def _run_leases(cfg: Config, args: argparse.Namespace) -> contextlib.AbstractContextManager:
    dates = lease_dates(args)
    if not dates:
        return contextlib.nullcontext()
    store = lease_store(cfg.lakehouse_root, lambda: build_spark_session(cfg, f"duia-{args.stage}"))
    return hold_run_leases(
        store,
        dates,
        f"duia {args.stage}",
        cfg.ops.lease_ttl_seconds,
        cfg.ops.heartbeat_seconds,
        take_over=args.take_over_lease,
    )


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """A scheduler stopping the task (SIGTERM) unwinds like a failure, so leases are
    released instead of waiting to expire."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wants_debug(argv: list[str] | None) -> bool:
    """--debug, read before the stages are imported (their imports already warn)."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--debug", action="store_true")
    return early.parse_known_args(argv)[0].debug


def main(argv: list[str] | None = None) -> int:
    quiet_logs(debug=_wants_debug(argv))
    args = build_parser().parse_args(argv)
    for name in PATH_FLAGS:
        if getattr(args, name, None):
            setattr(args, name, anchor_path(getattr(args, name), Path.cwd()))
    overrides = list(args.overrides)
    if args.lakehouse:
        overrides.append(f"lakehouse.root={args.lakehouse}")
    if args.master:
        overrides.append(f"spark.master={args.master}")
    try:
        cfg = load_config(args.conf, overrides)
        with _sigterm_unwinds(), _run_leases(cfg, args):
            return load_stage(args.stage).run(cfg, args)
    except ConfigError as e:
        print(f"duia {args.stage}: configuration error: {e}", file=sys.stderr)
        return 2
    except LeaseError as e:
        what = "refused" if isinstance(e, LeaseHeldError) else "stopped"
        print(f"duia {args.stage}: {what}: {e}", file=sys.stderr)
        return EXIT_LEASE
    except KeyboardInterrupt:
        if not lost_leases():
            raise
        print(f"duia {args.stage}: stopped: {lost_leases()[-1]}", file=sys.stderr)
        return EXIT_LEASE
    except Exception as e:  # the CLI's job is a clear message and a non-zero exit
        if args.debug:
            traceback.print_exc()
        print(f"duia {args.stage}: failed: {failure_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
