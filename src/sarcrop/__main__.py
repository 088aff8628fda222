"""``python -m sarcrop``: the same as the ``sarcrop`` command."""

import sys

from sarcrop.cli import main

sys.exit(main())
