"""`python -m proxy.workers`: a worker process (started by the supervisor only)."""

import sys

from .worker import main

sys.exit(main())
