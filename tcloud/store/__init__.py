"""The store layer: the only code that writes SQL (besides the migrations in ``tcloud/migrations``).

One module per group of tables. Each function says what it does for its caller (``insert_account``,
``record_invoice_with_lines``), takes a pool or a connection first, and keeps an invariant that spans tables (an
invoice and its lines; a namespace and its ownership row) inside one function and one transaction. Routes,
activities and the command-line tools call these functions; ``tests/test_layout.py`` fails on SQL anywhere else.
"""
