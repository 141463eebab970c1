"""Pure rules of the business, no I/O: billing periods, metering arithmetic, prices and plans, names, key hashing,
the states things go through. Unit-tested alone."""
