-- The demo Modernized baseline: the Hibernate tables in `public` plus the `opendolphin` schema
-- objects migration V0002 indexes (the JPA "*_model" tables of the modernized server).
CREATE SCHEMA opendolphin;

CREATE TABLE opendolphin.patient_model (
    id bigint PRIMARY KEY,
    facility_id varchar(255) NOT NULL,
    patient_id varchar(255) NOT NULL,
    full_name varchar(255) NOT NULL,
    kana_name varchar(255),
    gender varchar(255),
    birthday varchar(255)
);
COMMENT ON TABLE opendolphin.patient_model IS '患者モデル (patient model)';

CREATE TABLE opendolphin.appointment_model (
    id bigint PRIMARY KEY,
    karte_id bigint NOT NULL,
    date date NOT NULL,
    name varchar(255)
);

CREATE TABLE opendolphin.patient_visit_model (
    id bigint PRIMARY KEY,
    facility_id varchar(255) NOT NULL,
    pvt_date varchar(255) NOT NULL,
    status integer NOT NULL
);

CREATE TABLE opendolphin.document_model (
    id bigint PRIMARY KEY,
    karte_id bigint NOT NULL,
    started timestamp without time zone NOT NULL,
    status varchar(1) NOT NULL,
    link_id bigint
);

CREATE TABLE opendolphin.nlabo_module (
    id bigint PRIMARY KEY,
    patient_id varchar(255) NOT NULL,
    sample_date varchar(255) NOT NULL,
    lab_center_code varchar(255)
);

CREATE TABLE opendolphin.registered_diagnosis_model (
    id bigint PRIMARY KEY,
    karte_id bigint NOT NULL,
    started timestamp without time zone NOT NULL,
    diagnosis varchar(255) NOT NULL
);
