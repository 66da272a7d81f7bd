-- V0003: 二要素認証・監査ログ (two-factor authentication and the audit trail).
CREATE TABLE IF NOT EXISTS d_factor2_credential (
    id BIGSERIAL PRIMARY KEY,
    user_pk BIGINT NOT NULL,
    credential_type VARCHAR(32) NOT NULL,
    label VARCHAR(255),
    secret TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ
);
COMMENT ON TABLE d_factor2_credential IS '二要素認証の資格情報';

CREATE TABLE IF NOT EXISTS d_factor2_challenge (
    id BIGSERIAL PRIMARY KEY,
    user_pk BIGINT NOT NULL,
    challenge VARCHAR(255) NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS d_audit_event (
    id BIGSERIAL PRIMARY KEY,
    event_time TIMESTAMPTZ NOT NULL,
    actor_id VARCHAR(255),
    actor_display_name VARCHAR(255),
    actor_role VARCHAR(64),
    action VARCHAR(64) NOT NULL,
    resource VARCHAR(255),
    patient_id VARCHAR(255),
    request_id VARCHAR(64),
    ip_address VARCHAR(64),
    user_agent VARCHAR(512),
    payload_hash VARCHAR(64) NOT NULL,
    previous_hash VARCHAR(64),
    event_hash VARCHAR(64) NOT NULL,
    payload TEXT
);
COMMENT ON TABLE d_audit_event IS '監査イベント: payload_hash = sha256(payload), event_hash はチェーン';
CREATE INDEX IF NOT EXISTS idx_audit_event_time ON d_audit_event (event_time);

CREATE TABLE IF NOT EXISTS d_third_party_disclosure (
    id BIGSERIAL PRIMARY KEY,
    patient_id VARCHAR(255) NOT NULL,
    recipient VARCHAR(255) NOT NULL,
    purpose VARCHAR(255),
    disclosed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- No IF EXISTS: the baseline must contain d_factor2_backupkey.
ALTER TABLE d_factor2_backupkey ADD COLUMN created_at TIMESTAMPTZ;
ALTER TABLE d_factor2_backupkey ADD COLUMN hash_algorithm VARCHAR(32);
