"""Rules over stored data that both the API and the activities run (an invoice priced from the ledger, a spend
alert checked against the estimate): domain rules plus store calls, no HTTP and no Temporal."""
