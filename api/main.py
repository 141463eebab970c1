"""Entry point of the API and portal (``tcloud-api``)."""

from __future__ import annotations

import logging

from aiohttp import web

from api.app import create_app
from tcloud.settings import get_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    # The Cloud Ops API over gRPC runs in this process too (settings.cloud_api_port; None turns it off).
    app = create_app(settings, cloud_api=settings.cloud_api_port is not None)
    web.run_app(app, host=settings.api_host, port=settings.api_port, access_log=None)


if __name__ == "__main__":
    main()
