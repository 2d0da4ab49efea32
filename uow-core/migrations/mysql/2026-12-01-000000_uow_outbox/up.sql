-- uow's transactional outbox and inbox (feature `outbox`), MySQL and MariaDB (InnoDB: row locks
-- for the relay's FOR UPDATE SKIP LOCKED).
CREATE TABLE IF NOT EXISTS uow_outbox (
    sequence BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    message_id VARCHAR(64) NOT NULL UNIQUE,
    aggregate_type VARCHAR(255) NOT NULL,
    aggregate_key VARCHAR(255) NOT NULL,
    event_type VARCHAR(255) NOT NULL,
    payload LONGTEXT NOT NULL,
    created_at BIGINT NOT NULL,
    published_at BIGINT NULL,
    KEY uow_outbox_unpublished (published_at, sequence)
) ENGINE = InnoDB;
CREATE TABLE IF NOT EXISTS uow_inbox (
    message_id VARCHAR(64) NOT NULL PRIMARY KEY,
    handled_at BIGINT NOT NULL
) ENGINE = InnoDB;
