"""``python -m bench [--quick] [--write] [NAME...]``: run benchmarks, print tables, update the doc.

Full runs rewrite their sections of docs/benchmarks.md; ``--quick`` (small sizes) writes nothing
unless ``--write`` is given. Exit status 1 when a benchmark could not measure (not for a missed
target: targets are reported, never enforced).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from bench.report import ORDER, print_result, update_doc


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all): {', '.join(ORDER)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of ~1 min")
    parser.add_argument("--write", action="store_true",
                        help="update docs/benchmarks.md in quick mode too")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(ORDER))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    names = [n for n in ORDER if n in args.names] if args.names else list(ORDER)
    command = " ".join(["python -m bench", *argv])
    failed = []
    started = time.monotonic()
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        began = time.monotonic()
        try:
            result = module.run(quick=args.quick)
        except Exception as exc:
            traceback.print_exc()
            print(f"RESULT {name}: FAILED: {exc}", flush=True)
            failed.append(name)
            continue
        print_result(result)
        print(f"  ({name} took {time.monotonic() - began:.0f} s)", flush=True)
        if not args.quick or args.write:
            update_doc(result, command, args.quick)
    print(f"\n{len(names) - len(failed)} of {len(names)} benchmark(s) measured in "
          f"{time.monotonic() - started:.0f} s" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
