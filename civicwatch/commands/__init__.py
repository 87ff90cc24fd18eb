"""The ``civicwatch`` subcommands, one module per group; civicwatch.cli parses and dispatches."""
