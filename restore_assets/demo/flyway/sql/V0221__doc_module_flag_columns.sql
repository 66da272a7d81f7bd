-- V0221: admission flag on documents, perform flag on modules.
ALTER TABLE IF EXISTS d_document ADD COLUMN IF NOT EXISTS admflag VARCHAR(1);
ALTER TABLE IF EXISTS d_module ADD COLUMN IF NOT EXISTS performflag VARCHAR(1);
