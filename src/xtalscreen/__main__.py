import sys

from xtalscreen.cli import main

sys.exit(main())
