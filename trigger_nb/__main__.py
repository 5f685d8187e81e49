"""``python -m trigger_nb`` is ``trigger-nb``."""

import sys

from .cli import main

sys.exit(main())
