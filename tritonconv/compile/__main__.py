"""`python -m tritonconv.compile`: the command line of tritonconv/commands/compile.py."""
import sys

from ..commands.compile import main

sys.exit(main())
