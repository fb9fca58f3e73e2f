"""An app whose import kills the process (like a crashing C extension): with lazy-apps
every worker dies before serving anything."""
import os

os._exit(3)
