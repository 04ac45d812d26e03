"""The ``greenrt-lab`` command line (a stub until the lab lands)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from . import __version__

    args = sys.argv[1:] if argv is None else argv
    print(f"greenrt-lab {__version__}")
    if args and args[0] not in ("--version", "version"):
        print("the lab commands are not implemented yet", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
