"""``python -m videosys.models ...`` runs the ``videosys`` command line."""

import sys

from .cli import main

sys.exit(main())
