import sys

from sse_hub.cli import main

sys.exit(main())
