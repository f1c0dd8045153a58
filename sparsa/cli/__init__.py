"""The sparsa command line: the layer on top of hw, sim, sw and models (nothing imports it back).

Every subcommand lives in a module of this package and imports its heavy dependencies (torch,
Amaranth, the simulators) inside the command function, so ``sparsa --help`` stays fast. A bad
input ends in one line on stderr naming the bad value (exit status 2 for unusable arguments, 1
for inputs that cannot be processed), Ctrl-C in one line and status 130.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from sparsa.config import ConfigError, ConfigWarning
from sparsa.nm import PatternSyntaxError
from sparsa.sw.prune import PatternWarning

from . import explore, fpga, hardware, models, report, run
from .common import Parser, UsageError

__all__ = ["build_parser", "main"]

DESCRIPTION = ("Co-design toolkit for N:M structured-sparse systolic-array accelerators: "
               "reports, pruning, RTL runs, Verilog and FPGA builds.")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sparsa", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (report, run, models, hardware, fpga, explore):
        module.register(sub)
    return parser


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return f"sparsa: error: {text}\n"


def _one_line_warnings(show):
    """A ``warnings.showwarning`` that prints sparsa's own warnings as one line each and hands
    the others to ``show``."""
    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, (ConfigWarning, PatternWarning)):
            sys.stderr.write(f"sparsa: warning: {' '.join(str(message).split())}\n")
        else:
            show(message, category, filename, lineno, file, line)
    return showwarning


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:   # no command at all: show what there is
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            for category in (ConfigWarning, PatternWarning):   # shown, whatever the filters
                warnings.simplefilter("default", category)
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            return args.func(args)
    except KeyboardInterrupt:
        sys.stderr.write("sparsa: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (`sparsa models | head`): end quietly, and keep Python from
        # complaining about the unflushed stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (UsageError, ConfigError, PatternSyntaxError) as e:
        parser.exit(2, _one_line(e))
    except (ValueError, RuntimeError, OSError, EOFError) as e:
        parser.exit(1, _one_line(e))


if __name__ == "__main__":
    sys.exit(main())
