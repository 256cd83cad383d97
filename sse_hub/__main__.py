"""``python -m sse_hub``: the ``sse-hub`` command (``sse_hub.cli.main``), its exit code passed on."""

import sys

from sse_hub.cli import main

sys.exit(main())
