-- The demo Legacy database: Hibernate tables plus the CLAIM/JMS tables (§3.3), the Flyway-era
-- audit/2FA tables a published Legacy dump carries, and an `opendolphin` schema of helpers.
CREATE TABLE d_factor2_credential (
    id bigint PRIMARY KEY,
    user_pk bigint NOT NULL,
    credential_type varchar(32) NOT NULL,
    label varchar(255),
    secret text NOT NULL,
    created_at timestamp without time zone NOT NULL
);

CREATE TABLE d_audit_event (
    id bigint PRIMARY KEY,
    event_time timestamp without time zone NOT NULL,
    actor_id varchar(255),
    actor_display_name varchar(255),
    action varchar(64) NOT NULL,
    resource varchar(255),
    payload_hash varchar(64) NOT NULL,
    event_hash varchar(64) NOT NULL
);

CREATE TABLE claim_item (
    id bigint PRIMARY KEY,
    module_id bigint NOT NULL REFERENCES d_module (id),
    code varchar(32) NOT NULL,
    name varchar(255) NOT NULL,
    number varchar(32),
    unit varchar(32),
    classcode varchar(32)
);
COMMENT ON TABLE claim_item IS 'CLAIM 送信明細 (claim items)';

CREATE TABLE diagnosis_module (
    id bigint PRIMARY KEY,
    diagnosis_id bigint NOT NULL REFERENCES d_diagnosis (id),
    claim_status varchar(16) NOT NULL,
    sent_at timestamp without time zone
);

CREATE SCHEMA opendolphin;
COMMENT ON SCHEMA opendolphin IS 'Flyway-era objects (history, helpers)';

-- A dollar-quoted body with backslashes and a quote inside: psql must not see meta-commands here.
CREATE FUNCTION opendolphin.normalize_kana(input text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    AS $body$
BEGIN
    -- '\s' below is a regex, not a psql command; 全角スペース is folded too.
    RETURN regexp_replace(replace(input, '　', ' '), '\s+', ' ', 'g');
END;
$body$;

CREATE INDEX d_patient_kana_idx ON d_patient (kananame);
CREATE INDEX d_document_karte_idx ON d_document (karte_id, started);
