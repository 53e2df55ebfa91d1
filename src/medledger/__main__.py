"""``python -m medledger`` runs the command line."""

from medledger.cli.main import main

main()
