import sys

from .cli import gatewayd_main

sys.exit(gatewayd_main())
