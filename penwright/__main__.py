import sys

from penwright.cli import main

sys.exit(main())
