"""`python -m dlrun ...` is the same as `dlrun ...`."""

from dlrun.cli import program

if __name__ == "__main__":
    program()
