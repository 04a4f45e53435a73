"""Click commands, one module per area; importing a module registers its commands on ``diffprobe.cli.main``.

Modules import only click (and light diffprobe modules) at import time; heavy imports live inside the
command functions so that ``diffprobe --help`` stays instant.
"""

from diffprobe.commands import demo, extract, store  # noqa: F401
from diffprobe.commands import cka, store_import  # noqa: F401,E402
from diffprobe.commands import probe  # noqa: F401,E402
