"""`duia <stage> [--conf FILE] [--set key=value] [--lakehouse PATH] [--date D] ...`

The same flags work for `spark-submit jobs/<stage>.py ...`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import traceback

from duia_spark.config import ConfigError, load_config
from duia_spark.stages import STAGE_MODULES, load_stage


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {value!r}") from e


def _common_arguments() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("common options")
    g.add_argument("--conf", help="YAML file overriding conf/default.yaml")
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
    g.add_argument("--debug", action="store_true", help="print full tracebacks on failure")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = list(args.overrides)
    if args.lakehouse:
        overrides.append(f"lakehouse.root={args.lakehouse}")
    if args.master:
        overrides.append(f"spark.master={args.master}")
    try:
        cfg = load_config(args.conf, overrides)
        return load_stage(args.stage).run(cfg, args)
    except ConfigError as e:
        print(f"duia {args.stage}: configuration error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the CLI's job is a clear message and a non-zero exit
        if args.debug:
            traceback.print_exc()
        print(f"duia {args.stage}: failed: {failure_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
