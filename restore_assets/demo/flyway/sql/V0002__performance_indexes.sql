-- V0002: trigram search and the indexes the chart screens need. The tables come from the
-- Modernized baseline: without it this fails with `relation "appointment_model" does not exist`.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX IF NOT EXISTS idx_appointment_karte_date
    ON appointment_model (karte_id, date);
CREATE INDEX IF NOT EXISTS idx_patient_visit_facility_date_status
    ON patient_visit_model (facility_id, pvt_date, status);
CREATE INDEX IF NOT EXISTS idx_document_karte_started_status_link
    ON document_model (karte_id, started, status, link_id);
CREATE INDEX IF NOT EXISTS idx_nlabo_patient_sample_date
    ON nlabo_module (patient_id, sample_date);
CREATE INDEX IF NOT EXISTS idx_registered_diagnosis_karte_started
    ON registered_diagnosis_model (karte_id, started);
CREATE INDEX IF NOT EXISTS idx_patient_kana_name_trgm
    ON patient_model USING gin (kana_name gin_trgm_ops);
