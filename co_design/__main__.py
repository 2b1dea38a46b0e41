"""`python -m systolab.co_design sweep|report ...`: the same commands as `systolab sweep|report`."""

import sys

from .cli import main

sys.exit(main())
