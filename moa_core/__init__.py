"""MoA Studio core: config, engine, providers, store, analysis.

litellm downloads its model price map at import time unless told otherwise; the app
must never touch the network, so the switch is set here, before anything in the
package can import litellm.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOG", "ERROR")

__version__ = "0.1.0"
