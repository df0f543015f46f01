"""`python -m minidl_cli` behaves exactly like `minidl`."""

from minidl_cli.cli import main

if __name__ == "__main__":
    main()
