"""``python -m gpubp``: the same as the ``gpubp`` command."""

import sys

from gpubp.cli import main

sys.exit(main())
