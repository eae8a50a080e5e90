"""gankit's Ray layer and command line. Importing it installs the console: gankit's log
lines on stderr (jobs.console), in a notebook as under the command line."""
from jobs import console  # noqa: F401  (installs the `gankit` logger's handler)
