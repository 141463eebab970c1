-- One row per database dump of a backup; the store's manifest stays the source of truth (this table may be
-- restored from an older backup), the table is what the operator API lists.
CREATE TABLE backups (
    backup_id   text        NOT NULL CHECK (backup_id ~ '^[0-9]{8}T[0-9]{6}Z$'),
    database    text        NOT NULL,
    store       text        NOT NULL CHECK (store IN ('filesystem', 'oci')),
    object_key  text        NOT NULL,
    size_bytes  bigint      NOT NULL CHECK (size_bytes >= 0),
    sha256      text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    workflow_id text        NOT NULL,
    deleted_at  timestamptz,
    PRIMARY KEY (backup_id, database)
);
CREATE INDEX backups_created_at ON backups (created_at DESC);
