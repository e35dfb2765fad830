"""``python -m usageledger``: the same command line as the ``usageledger`` script."""

from usageledger.cli import main

main()
