-- OpenDolphin's Hibernate-generated tables in `public` (legacy era), written for the demo from
-- the entity classes' public shape: Java field names lower-cased, a few explicit column names.
CREATE SEQUENCE hibernate_sequence START WITH 1 INCREMENT BY 1;
-- Only used when a facility is created: facility id = '1.3.6.1.4.1.9414.72.' || nextval.
CREATE SEQUENCE facility_num START WITH 200 INCREMENT BY 1;

CREATE TABLE d_facility (
    id bigint PRIMARY KEY,
    facilityid varchar(255) NOT NULL UNIQUE,
    facilityname varchar(255) NOT NULL,
    zipcode varchar(255),
    address varchar(255),
    telephone varchar(255),
    url varchar(255),
    registereddate date NOT NULL,
    membertype varchar(255) NOT NULL
);
COMMENT ON TABLE d_facility IS '医療機関 (facility)';

CREATE TABLE d_users (
    id bigint PRIMARY KEY,
    userid varchar(255) NOT NULL UNIQUE,
    password varchar(255) NOT NULL,
    sirname varchar(255),
    givenname varchar(255),
    commonname varchar(255) NOT NULL,
    email varchar(255),
    membertype varchar(255) NOT NULL,
    registereddate date NOT NULL,
    facility_id bigint NOT NULL REFERENCES d_facility (id)
);
COMMENT ON TABLE d_users IS '利用者 (users); password is an MD5 hex digest';

CREATE TABLE d_roles (
    id bigint PRIMARY KEY,
    c_role varchar(255) NOT NULL,
    user_id varchar(255) NOT NULL,
    c_user bigint REFERENCES d_users (id)
);

CREATE TABLE d_patient (
    id bigint PRIMARY KEY,
    facilityid varchar(255) NOT NULL,
    patientid varchar(255) NOT NULL,
    fullname varchar(255) NOT NULL,
    kananame varchar(255),
    romanname varchar(255),
    gender varchar(255) NOT NULL,
    birthday varchar(255),
    telephone varchar(255),
    memo text,
    UNIQUE (facilityid, patientid)
);
COMMENT ON TABLE d_patient IS '患者 (patients); facilityid is text, not a foreign key';

CREATE TABLE d_karte (
    id bigint PRIMARY KEY,
    created date NOT NULL,
    patient_id bigint NOT NULL REFERENCES d_patient (id)
);

CREATE TABLE d_document (
    id bigint PRIMARY KEY,
    confirmed timestamp without time zone NOT NULL,
    started timestamp without time zone NOT NULL,
    ended timestamp without time zone,
    recorded timestamp without time zone NOT NULL,
    linkid bigint,
    linkrelation varchar(255),
    status varchar(1) NOT NULL,
    creator_id bigint NOT NULL REFERENCES d_users (id),
    karte_id bigint NOT NULL REFERENCES d_karte (id),
    docid varchar(32) NOT NULL,
    doctype varchar(255) NOT NULL,
    title varchar(255) NOT NULL,
    purpose varchar(255),
    hasmark boolean NOT NULL DEFAULT false,
    hasimage boolean NOT NULL DEFAULT false,
    hasrp boolean NOT NULL DEFAULT false,
    hastreatment boolean NOT NULL DEFAULT false,
    haslabotest boolean NOT NULL DEFAULT false
);

CREATE TABLE d_module (
    id bigint PRIMARY KEY,
    confirmed timestamp without time zone NOT NULL,
    started timestamp without time zone NOT NULL,
    ended timestamp without time zone,
    recorded timestamp without time zone NOT NULL,
    linkid bigint,
    linkrelation varchar(255),
    status varchar(1) NOT NULL,
    creator_id bigint NOT NULL REFERENCES d_users (id),
    karte_id bigint NOT NULL REFERENCES d_karte (id),
    name varchar(255) NOT NULL,
    role varchar(255) NOT NULL,
    stampnumber integer NOT NULL,
    entity varchar(255) NOT NULL,
    beanbytes bytea,
    doc_id bigint NOT NULL REFERENCES d_document (id)
);

CREATE TABLE d_diagnosis (
    id bigint PRIMARY KEY,
    confirmed timestamp without time zone NOT NULL,
    started timestamp without time zone NOT NULL,
    ended timestamp without time zone,
    recorded timestamp without time zone NOT NULL,
    status varchar(1) NOT NULL,
    creator_id bigint NOT NULL REFERENCES d_users (id),
    karte_id bigint NOT NULL REFERENCES d_karte (id),
    diagnosis varchar(255) NOT NULL,
    diagnosiscode varchar(255),
    diagnosiscodesystem varchar(255)
);

CREATE TABLE d_appo (
    id bigint PRIMARY KEY,
    karte_id bigint NOT NULL REFERENCES d_karte (id),
    c_name varchar(255) NOT NULL,
    c_date date NOT NULL,
    memo varchar(255)
);

CREATE TABLE d_patient_visit (
    id bigint PRIMARY KEY,
    facilityid varchar(255) NOT NULL,
    patient_id bigint NOT NULL REFERENCES d_patient (id),
    pvtdate varchar(255) NOT NULL,
    status integer NOT NULL,
    department varchar(255)
);

-- Two-factor tables: userpk is the d_users id, deliberately without a foreign key.
CREATE TABLE d_factor2_code (
    id bigint PRIMARY KEY,
    userpk bigint NOT NULL,
    code varchar(255) NOT NULL,
    mobilenumber varchar(255)
);
CREATE TABLE d_factor2_device (
    id bigint PRIMARY KEY,
    userpk bigint NOT NULL,
    devicename varchar(255) NOT NULL,
    macaddress varchar(255),
    entrydate varchar(255)
);
CREATE TABLE d_factor2_backupkey (
    id bigint PRIMARY KEY,
    userpk bigint NOT NULL,
    backupkey varchar(255) NOT NULL
);
