"""The command line: `gankit` and its subcommands."""
