"""``python -m pyro_vaegap.cli``: the ``vaegap`` command."""
import sys

from . import main

sys.exit(main())
