"""``python -m loadtest``: gevent patches first (by importing locust), then the run."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from loadtest.options import parse  # noqa: E402


def main() -> int:
    options = parse()
    from loadtest.runner import run  # after the options: --help needs no locust

    return run(options)


if __name__ == "__main__":
    sys.exit(main())
