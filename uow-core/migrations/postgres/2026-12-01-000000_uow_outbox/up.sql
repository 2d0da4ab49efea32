-- uow's transactional outbox and inbox (feature `outbox`), PostgreSQL.
CREATE TABLE IF NOT EXISTS uow_outbox (
    sequence BIGSERIAL PRIMARY KEY,
    message_id VARCHAR(64) NOT NULL UNIQUE,
    aggregate_type VARCHAR(255) NOT NULL,
    aggregate_key VARCHAR(255) NOT NULL,
    event_type VARCHAR(255) NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    published_at BIGINT
);
CREATE INDEX IF NOT EXISTS uow_outbox_unpublished ON uow_outbox (sequence) WHERE published_at IS NULL;
CREATE TABLE IF NOT EXISTS uow_inbox (
    message_id VARCHAR(64) PRIMARY KEY,
    handled_at BIGINT NOT NULL
);
