"""Run localstripe on loopback with its store in a file of our choosing.

localstripe pickles its whole store to the fixed path ``/tmp/localstripe.pickle`` on every write, which
every instance on the machine would share. This runner points the store at a file in the state directory
(or keeps it in memory for tests) and binds to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import logging
import pickle
from pathlib import Path

from aiohttp import web
from localstripe import resources, server


def _configure_store(store_file: Path | None) -> None:
    store = resources.store

    def dump_to_disk() -> None:
        if store_file is None:
            return
        tmp = store_file.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(store_file)

    store.dump_to_disk = dump_to_disk  # type: ignore[method-assign]
    if store_file is not None and store_file.exists():
        with open(store_file, "rb") as f:
            dict.update(store, pickle.load(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default="127.0.0.1")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--store-file", type=Path)
    group.add_argument("--no-persist", action="store_true")
    args = parser.parse_args()
    _configure_store(None if args.no_persist else args.store_file)
    logging.basicConfig(level=logging.WARNING)
    web.run_app(server.app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
