"""`python -m dashboard.cli` = `proxyctl`."""

import sys

from .commands import main

sys.exit(main())
