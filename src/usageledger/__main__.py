"""``python -m usageledger``: the command line, as the ``usageledger`` console script runs it (for a checkout or a
venv whose scripts are not on ``PATH``)."""

from usageledger.cli import main

if __name__ == "__main__":
    main()
