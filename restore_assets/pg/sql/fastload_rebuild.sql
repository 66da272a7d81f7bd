-- restore_assets fast load, 2 of 2: run after the seed, in the same transaction. Builds again
-- what fastload_defer.sql dropped (PK/UNIQUE/EXCLUDE and unique indexes first, then the other
-- indexes, then the foreign keys, each validated once; then comments, CLUSTER marks, replica
-- identities, statistics targets) and compares the fingerprint with the one taken before the
-- drops. If a statement fails (a seed row violates a key) its SQLSTATE and object are printed
-- and RA002 is raised; if the fingerprint differs, RA001: the whole transaction rolls back.
-- Never a message of the server's own: it can quote a row.

CREATE FUNCTION pg_temp.restore_assets_rebuild() RETURNS text
LANGUAGE plpgsql SET search_path = '' AS $rebuild$
DECLARE
    statement record;
    before text;
    decided text;
    built int := 0;
BEGIN
    SELECT s.fingerprint, s.decision INTO STRICT before, decided
      FROM pg_temp.restore_assets_fastload_state s;
    IF decided <> 'fast' THEN
        RETURN decided;
    END IF;
    FOR statement IN
        SELECT f.ddl, f.object FROM pg_temp.restore_assets_fastload f ORDER BY f.step, f.seq
    LOOP
        BEGIN
            EXECUTE statement.ddl;
        EXCEPTION WHEN OTHERS THEN
            UPDATE pg_temp.restore_assets_fastload_state SET decision = 'failed';
            RETURN 'failed ' || SQLSTATE || ': building ' || statement.object;
        END;
        built := built + 1;
    END LOOP;
    IF pg_temp.restore_assets_fingerprint() IS DISTINCT FROM before THEN
        UPDATE pg_temp.restore_assets_fastload_state SET decision = 'failed';
        RETURN 'failed RA001: the indexes and keys differ from the schema';
    END IF;
    RETURN 'fast: ' || built || ' statements rebuilt, fingerprint sha256 '
        || pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(before, 'UTF8')), 'hex');
END
$rebuild$;

CREATE FUNCTION pg_temp.restore_assets_rebuilt() RETURNS void
LANGUAGE plpgsql SET search_path = '' AS $rebuilt$
BEGIN
    IF (SELECT s.decision FROM pg_temp.restore_assets_fastload_state s) = 'failed' THEN
        RAISE EXCEPTION USING ERRCODE = 'RA002',
            MESSAGE = 'restore_assets fast load: the indexes and keys were not rebuilt';
    END IF;
END
$rebuilt$;

SELECT '@NONCE@ ' || pg_temp.restore_assets_rebuild() AS restore_assets_fastload;
SELECT pg_temp.restore_assets_rebuilt();
