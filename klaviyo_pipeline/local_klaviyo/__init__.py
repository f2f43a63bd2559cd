"""Local Klaviyo server: the Klaviyo API endpoints the sync uses, served on 127.0.0.1.

Start it with ``python -m klaviyo_pipeline.local_klaviyo --port 0`` or from Python with
``LocalKlaviyoServer(port=0).start()``. See docs/local_klaviyo.md.
"""

from klaviyo_pipeline.local_klaviyo.server import LocalKlaviyoServer

__all__ = ["LocalKlaviyoServer"]
