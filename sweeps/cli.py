"""The `samat` console command: one parser, a subcommand per job."""

from __future__ import annotations

import sys

from trainables.cli import USAGE_ERROR, OneLineParser, UsageError, add_train_parser


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="samat", description="SAM vs adversarial training: train one model, sweep many "
                                                     "with Ray Tune and Optuna, compare clean/robust Pareto fronts.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_train_parser(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as e:
        print(f"samat {args.command}: error: {e}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
