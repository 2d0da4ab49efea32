-- uow's transactional outbox and inbox (feature `outbox`), SQLite.
-- AUTOINCREMENT: a sequence is never reused, even after published rows are purged.
CREATE TABLE IF NOT EXISTS uow_outbox (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    aggregate_type TEXT NOT NULL,
    aggregate_key TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    published_at BIGINT
);
CREATE INDEX IF NOT EXISTS uow_outbox_unpublished ON uow_outbox (published_at, sequence);
CREATE TABLE IF NOT EXISTS uow_inbox (
    message_id TEXT PRIMARY KEY NOT NULL,
    handled_at BIGINT NOT NULL
);
