"""Claims test ports for a process that cannot take POSIX record locks (Node).

tests/interop/node/support.js starts it once and writes "claim" lines to its
stdin; for each it prints one port claimed by interop_support.free_port (the
scheme of tests/support/ports.h: outside the ephemeral range, a record lock
on the port's byte of the shared lock file). It holds every claim until its
stdin closes, which happens when its parent exits, crash included; exiting
releases them all.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import interop_support  # noqa: E402


def main():
    for _ in sys.stdin:
        print(interop_support.free_port(), flush=True)


if __name__ == "__main__":
    main()
