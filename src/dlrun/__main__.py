"""`python -m dlrun ...` is the same as `dlrun ...`."""

import sys

from dlrun.cli import main

if __name__ == "__main__":
    sys.exit(main())
