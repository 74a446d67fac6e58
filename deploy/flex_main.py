"""Flex Template entry point: the template's parameters are the `llavaforge nightly` options;
Beam and Dataflow options supplied by the launcher pass through to Beam."""

import sys

from llavaforge.cli import main

if __name__ == "__main__":
    sys.exit(main(["nightly", *sys.argv[1:]]))
