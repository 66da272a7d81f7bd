-- V0220: asynchronous PHR export jobs.
CREATE TABLE IF NOT EXISTS phr_async_job (
    job_id UUID PRIMARY KEY,
    job_type VARCHAR(64) NOT NULL,
    facility_id VARCHAR(255) NOT NULL,
    patient_scope JSONB NOT NULL DEFAULT '{}'::jsonb,
    state VARCHAR(32) NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    queued_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    result_uri TEXT,
    error_message TEXT
);
CREATE INDEX IF NOT EXISTS idx_phr_async_job_state ON phr_async_job (state, queued_at);
CREATE INDEX IF NOT EXISTS idx_phr_async_job_facility ON phr_async_job (facility_id, queued_at);
