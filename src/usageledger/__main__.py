"""``python -m usageledger``: the command line, the same as the ``usageledger`` console script (for a virtualenv
whose ``bin`` is not on ``PATH``, or to pick the interpreter)."""

from usageledger.cli import main

if __name__ == "__main__":
    main()
