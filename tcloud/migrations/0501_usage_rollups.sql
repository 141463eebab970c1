-- Rollups of the usage ledger, kept by triggers in the same statement as every ledger write (COPY, INSERT, UPDATE,
-- DELETE, TRUNCATE), so that readers sum days and months instead of every hourly row: the customer's daily usage
-- and month-to-date estimate, and the invoice. Only rows with an owner (account_id) are rolled up: the control
-- namespace's rows are never billed nor shown to a customer.
--
-- usage_daily / usage_monthly: per account, UTC day (month), namespace, metric and billable flag, how many ledger
-- rows there are and their sum. A row whose ledger rows were all deleted stays with ledger_rows = 0; readers skip it.
-- usage_day_versions: per account and UTC day, a number that changes with every change to that day's ledger rows
-- (from a sequence, so it never comes back even after a TRUNCATE): the API keeps what it rendered of a day for as long
-- as the day's version is unchanged.
-- Every hour's write updates its day's and month's rows in place: half-empty pages let those updates stay on the
-- page without touching the indexes (HOT).

CREATE TABLE usage_daily (
    account_id  text NOT NULL,
    day         date NOT NULL,
    namespace   text NOT NULL,
    metric      text NOT NULL,
    billable    boolean NOT NULL,
    ledger_rows bigint NOT NULL,
    quantity    numeric NOT NULL,
    PRIMARY KEY (account_id, day, namespace, metric, billable)
) WITH (fillfactor = 50);

CREATE TABLE usage_monthly (
    account_id  text NOT NULL,
    month       date NOT NULL CHECK (extract(day FROM month) = 1),
    namespace   text NOT NULL,
    metric      text NOT NULL,
    billable    boolean NOT NULL,
    ledger_rows bigint NOT NULL,
    quantity    numeric NOT NULL,
    PRIMARY KEY (account_id, month, namespace, metric, billable)
) WITH (fillfactor = 50);

CREATE SEQUENCE usage_version_seq;

CREATE TABLE usage_day_versions (
    account_id text NOT NULL,
    day        date NOT NULL,
    version    bigint NOT NULL,
    PRIMARY KEY (account_id, day)
) WITH (fillfactor = 50);

-- Applies a ledger statement's rows to the rollups: new rows count +1, old rows -1 (an UPDATE is both). Keys are
-- grouped and taken in order, so writers that overlap lock rollup rows in the same order. The transition tables'
-- names depend on the event, hence the statement built here.
CREATE FUNCTION usage_rollup_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rows_in  constant text := 'SELECT account_id, hour, namespace, metric, billable, 1::bigint AS n, quantity AS q '
                              'FROM ledger_new WHERE account_id IS NOT NULL';
    rows_out constant text := 'SELECT account_id, hour, namespace, metric, billable, -1::bigint AS n, -quantity AS q '
                              'FROM ledger_old WHERE account_id IS NOT NULL';
BEGIN
    EXECUTE format($sql$
        WITH delta AS MATERIALIZED (%s),
        daily AS (
            INSERT INTO usage_daily AS r (account_id, day, namespace, metric, billable, ledger_rows, quantity)
            SELECT account_id, (hour AT TIME ZONE 'UTC')::date, namespace, metric, billable, sum(n), sum(q)
              FROM delta GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
            ON CONFLICT (account_id, day, namespace, metric, billable) DO UPDATE
               SET ledger_rows = r.ledger_rows + EXCLUDED.ledger_rows, quantity = r.quantity + EXCLUDED.quantity),
        monthly AS (
            INSERT INTO usage_monthly AS r (account_id, month, namespace, metric, billable, ledger_rows, quantity)
            SELECT account_id, date_trunc('month', hour AT TIME ZONE 'UTC')::date, namespace, metric, billable,
                   sum(n), sum(q)
              FROM delta GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
            ON CONFLICT (account_id, month, namespace, metric, billable) DO UPDATE
               SET ledger_rows = r.ledger_rows + EXCLUDED.ledger_rows, quantity = r.quantity + EXCLUDED.quantity)
        INSERT INTO usage_day_versions AS v (account_id, day, version)
        SELECT account_id, day, nextval('usage_version_seq')
          FROM (SELECT DISTINCT account_id, (hour AT TIME ZONE 'UTC')::date AS day FROM delta) d
         ORDER BY 1, 2
        ON CONFLICT (account_id, day) DO UPDATE SET version = EXCLUDED.version
        $sql$,
        CASE TG_OP WHEN 'INSERT' THEN rows_in
                   WHEN 'UPDATE' THEN rows_in || ' UNION ALL ' || rows_out
                   ELSE rows_out END);
    RETURN NULL;
END $$;

CREATE FUNCTION usage_rollup_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE usage_daily, usage_monthly, usage_day_versions;
    RETURN NULL;
END $$;

-- No ledger write may slip between the backfill below and the triggers taking over.
LOCK TABLE usage_ledger IN SHARE ROW EXCLUSIVE MODE;

INSERT INTO usage_daily (account_id, day, namespace, metric, billable, ledger_rows, quantity)
SELECT account_id, (hour AT TIME ZONE 'UTC')::date, namespace, metric, billable, count(*), sum(quantity)
  FROM usage_ledger WHERE account_id IS NOT NULL GROUP BY 1, 2, 3, 4, 5;

INSERT INTO usage_monthly (account_id, month, namespace, metric, billable, ledger_rows, quantity)
SELECT account_id, date_trunc('month', day)::date, namespace, metric, billable, sum(ledger_rows), sum(quantity)
  FROM usage_daily GROUP BY 1, 2, 3, 4, 5;

INSERT INTO usage_day_versions (account_id, day, version)
SELECT account_id, day, nextval('usage_version_seq') FROM (SELECT DISTINCT account_id, day FROM usage_daily) d;

CREATE TRIGGER usage_ledger_rollup_insert AFTER INSERT ON usage_ledger
    REFERENCING NEW TABLE AS ledger_new FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup_changed();
CREATE TRIGGER usage_ledger_rollup_update AFTER UPDATE ON usage_ledger
    REFERENCING OLD TABLE AS ledger_old NEW TABLE AS ledger_new FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup_changed();
CREATE TRIGGER usage_ledger_rollup_delete AFTER DELETE ON usage_ledger
    REFERENCING OLD TABLE AS ledger_old FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup_changed();
CREATE TRIGGER usage_ledger_rollup_truncate AFTER TRUNCATE ON usage_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup_truncated();
