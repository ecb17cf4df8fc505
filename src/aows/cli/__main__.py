"""`python -m aows.cli`: the `aows` command."""

import sys

from aows.cli import main

sys.exit(main())
