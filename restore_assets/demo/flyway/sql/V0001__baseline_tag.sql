-- V0001: baseline tag. The real baseline is version 0 (flyway.baselineVersion=0);
-- this file only marks where the modernized history starts. Saved with a BOM and CRLF.
SELECT 1;
