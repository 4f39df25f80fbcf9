import sys

from nosplug.cli import main

sys.exit(main())
