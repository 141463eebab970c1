"""Run localstripe on loopback with its store in a file of our choosing, and list calls that scale.

localstripe pickles its whole store to the fixed path ``/tmp/localstripe.pickle`` on every write, which
every instance on the machine would share. This runner points the store at a file in the state directory
(or keeps it in memory for tests) and binds to 127.0.0.1 only.

Its list calls (which our Stripe code makes to look objects up before creating them, and which localstripe
itself makes on every subscription, invoice and customer export) scan every object in the store, events
included, so each call slowed with everything created before it: set-up of a 10,000-account bench fell to a
few accounts a minute. The store here also keeps its objects by type, and the list base method reads only the
type it lists; what the list returns, and in which order, is unchanged.

It also creates invoices the way Stripe does without a subscription (``pending_invoice_items_behavior=include``),
which localstripe 1.15 refuses: billing makes one invoice per account-period that way, with no $0 subscription
(whose monthly $0 invoice every customer would get on Stripe).
"""

from __future__ import annotations

import argparse
import logging
import pickle
from pathlib import Path

from aiohttp import web
from localstripe import resources, server


class _TypedStore(resources.Store):
    """localstripe's store (a dict of "<object>:<id>" keys) that also keeps each type's entries in order."""

    by_type: dict[str, dict[str, object]]

    def __setitem__(self, key: str, value: object) -> None:
        dict.__setitem__(self, key, value)
        self.by_type.setdefault(key.split(":", 1)[0], {})[key] = value
        self.dump_to_disk()

    def __delitem__(self, key: str) -> None:
        dict.__delitem__(self, key)
        self.by_type.get(key.split(":", 1)[0], {}).pop(key, None)
        self.dump_to_disk()

    def reindex(self) -> None:
        self.by_type = {}
        for key, value in list(self.items()):
            self.by_type.setdefault(key.split(":", 1)[0], {})[key] = value

    def clear(self) -> None:
        dict.clear(self)
        self.by_type = {}


def _list_all(cls: type, url: str | None, limit: object = None, starting_after: object = None,
              **kwargs: object) -> object:
    """``StripeObject._api_list_all`` reading one type's entries instead of scanning the whole store."""
    if kwargs:
        raise resources.UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
    li = resources.List(url, limit=limit, starting_after=starting_after)
    li._list = list(resources.store.by_type.get(cls.object, {}).values())  # type: ignore[attr-defined]
    return li


_create_invoice = resources.Invoice._api_create


def _api_create_invoice(cls: type, customer: object = None, subscription: object = None,
                        pending_invoice_items_behavior: object = None, description: object = None,
                        metadata: object = None, **kwargs: object) -> object:
    """``POST /v1/invoices`` as Stripe answers it without a subscription: with
    ``pending_invoice_items_behavior=include`` the customer's pending items make a one-off invoice (localstripe
    1.15 only invoices through a subscription, which on Stripe sends a $0 invoice every month)."""
    if subscription is not None or pending_invoice_items_behavior != "include":
        return _create_invoice(customer=customer, subscription=subscription, description=description,
                               metadata=metadata, pending_invoice_items_behavior=pending_invoice_items_behavior,
                               **kwargs)
    if kwargs:
        raise resources.UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
    if not isinstance(customer, str) or not customer.startswith("cus_"):
        raise resources.UserError(400, "Bad request")
    resources.Customer._api_retrieve(customer)  # 404 for an unknown customer
    pending = [i for i in resources.InvoiceItem._api_list_all(None, customer=customer, limit=99)._list
               if i.invoice is None]
    if not pending:
        raise resources.UserError(400, "Nothing to invoice for customer")
    return resources.Invoice(customer=customer, description=description, metadata=metadata)


def _configure_store(store_file: Path | None) -> None:
    store = resources.store
    store.__class__ = _TypedStore
    store.reindex()  # type: ignore[attr-defined]
    resources.StripeObject._api_list_all = classmethod(_list_all)  # type: ignore[assignment]
    resources.Invoice._api_create = classmethod(_api_create_invoice)  # type: ignore[assignment]

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
        store.reindex()  # type: ignore[attr-defined]


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
