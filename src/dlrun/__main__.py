"""`python -m dlrun ...` is the same as `dlrun ...`."""

from dlrun.cli import main

if __name__ == "__main__":
    main()
