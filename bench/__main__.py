"""``python -m bench [--quick | --smoke] [--write] [NAME...]``: run benchmarks, print tables,
update the doc.

Full runs rewrite their sections of docs/benchmarks.md; ``--quick`` (small sizes) writes nothing
unless ``--write`` is given; ``--smoke`` (tiny sizes, every code path, meaningless figures) never
writes. Exit status 1 when a benchmark could not measure (not for a missed target: targets are
reported, never enforced).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import threading
import time
import traceback

from bench.common import Size, measure_all
from bench.report import ORDER, print_result, update_doc


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all): {', '.join(ORDER)}")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="small sizes: a look in about a minute")
    sizes.add_argument("--smoke", action="store_true",
                       help="tiny sizes: every code path in seconds, figures meaningless; never writes")
    parser.add_argument("--write", action="store_true",
                        help="update docs/benchmarks.md in quick mode too")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(ORDER))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    names = [n for n in ORDER if n in args.names] if args.names else list(ORDER)
    size: Size = "smoke" if args.smoke else "quick" if args.quick else "full"
    command = " ".join(["python -m bench", *argv])
    started = time.monotonic()
    printing = threading.Lock()  # a smoke run's benchmarks finish side by side

    def run(name: str) -> bool:
        began = time.monotonic()
        try:
            result = importlib.import_module(f"bench.{name}").run(size)
        except Exception as exc:
            with printing:
                traceback.print_exc()
                print(f"RESULT {name}: FAILED: {exc}", flush=True)
            return False
        with printing:
            print_result(result)
            print(f"  ({name} took {time.monotonic() - began:.0f} s)", flush=True)
        if size == "full" or (size == "quick" and args.write):
            update_doc(result, command, quick=size == "quick")
        return True

    measured = measure_all(size, *(functools.partial(run, name) for name in names))
    failed = [name for name, ok in zip(names, measured, strict=True) if not ok]
    print(f"\n{len(names) - len(failed)} of {len(names)} benchmark(s) measured in "
          f"{time.monotonic() - started:.0f} s" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
