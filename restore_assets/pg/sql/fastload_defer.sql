-- restore_assets fast load, 1 of 2: run after the schema dump and before the seed, in the
-- restore's one transaction (pg/fastload.py). It records every index and PK/UNIQUE/EXCLUDE/FK
-- constraint of the user schemas as the server prints them (pg_get_indexdef,
-- pg_get_constraintdef), with what belongs to them, and a fingerprint of all of it; then drops
-- them, so the seed loads bare tables. fastload_rebuild.sql builds them again and compares the
-- fingerprint. Triggers, CHECK and NOT NULL are never touched. When the schema holds anything it
-- does not handle, nothing is dropped: the seed loads in the runbook's own order.
-- No name is ever read from a file: every statement replayed is text the server printed.

CREATE TEMPORARY TABLE restore_assets_fastload (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    step int NOT NULL,  -- 1 PK/UNIQUE/EXCLUDE and unique indexes, 2 other indexes, 3 FKs, 4 the rest
    ddl text NOT NULL,
    object text NOT NULL  -- what a failure names: `name on schema.table`
) ON COMMIT DROP;

CREATE TEMPORARY TABLE restore_assets_fastload_state (
    fingerprint text NOT NULL,
    decision text NOT NULL
) ON COMMIT DROP;

-- Everything the fast load must give back as it was, one line per object, sorted.
CREATE FUNCTION pg_temp.restore_assets_fingerprint() RETURNS text
LANGUAGE sql STABLE SET search_path = '' AS $fingerprint$
WITH user_ns AS (
    SELECT oid FROM pg_catalog.pg_namespace
     WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\_%'
)
SELECT coalesce(string_agg(line, E'\n' ORDER BY line), '') FROM (
    SELECT pg_catalog.format(
               'index %s on %s: %s | clustered %s | replica identity %s | valid %s | '
               'immediate %s | tablespace %s | owner %s | comment %L | statistics %s | attached to %s',
               i.indexrelid::pg_catalog.regclass, i.indrelid::pg_catalog.regclass,
               pg_catalog.pg_get_indexdef(i.indexrelid), i.indisclustered, i.indisreplident,
               i.indisvalid, i.indimmediate, ic.reltablespace, ic.relowner::pg_catalog.regrole,
               pg_catalog.obj_description(i.indexrelid, 'pg_class'),
               (SELECT string_agg(a.attnum || '=' || a.attstattarget, ',' ORDER BY a.attnum)
                  FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = i.indexrelid AND a.attstattarget >= 0),
               (SELECT string_agg(h.inhparent::pg_catalog.regclass::text, ',')
                  FROM pg_catalog.pg_inherits h WHERE h.inhrelid = i.indexrelid)) AS line
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
     WHERE ic.relnamespace IN (SELECT oid FROM user_ns)
    UNION ALL
    SELECT pg_catalog.format(
               'constraint %I on %s: %s | deferrable %s | deferred %s | validated %s | '
               'local %s | inherited %s | index %s | has parent %s | comment %L',
               c.conname, c.conrelid::pg_catalog.regclass, pg_catalog.pg_get_constraintdef(c.oid),
               c.condeferrable, c.condeferred, c.convalidated, c.conislocal, c.coninhcount,
               c.conindid::pg_catalog.regclass, c.conparentid <> 0,
               pg_catalog.obj_description(c.oid, 'pg_constraint'))
      FROM pg_catalog.pg_constraint c
     WHERE c.contype IN ('p', 'u', 'x', 'f') AND c.conrelid <> 0
       AND c.connamespace IN (SELECT oid FROM user_ns)
    UNION ALL
    SELECT pg_catalog.format(
               'table %s: replica identity %s | not null %s', t.oid::pg_catalog.regclass,
               t.relreplident,
               (SELECT string_agg(a.attname::text, ',' ORDER BY a.attnum)
                  FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = t.oid AND a.attnum > 0 AND a.attnotnull
                   AND NOT a.attisdropped))
      FROM pg_catalog.pg_class t
     WHERE t.relkind IN ('r', 'p', 'm') AND t.relnamespace IN (SELECT oid FROM user_ns)
) lines
$fingerprint$;

CREATE FUNCTION pg_temp.restore_assets_defer() RETURNS text
LANGUAGE plpgsql SET search_path = '' AS $defer$
DECLARE
    why text;
    statement text;
    deferred int;
BEGIN
    INSERT INTO pg_temp.restore_assets_fastload_state
    VALUES (pg_temp.restore_assets_fingerprint(), 'plain');

    CREATE TEMPORARY TABLE restore_assets_fastload_objects ON COMMIT DROP AS
    SELECT c.oid AS constraint_oid, c.contype, c.conrelid AS rel, c.conname::text AS name,
           c.conindid AS index_oid
      FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace
     WHERE c.contype IN ('p', 'u', 'x', 'f') AND c.conrelid <> 0
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
    UNION ALL
    SELECT NULL, 'i', i.indrelid, ic.relname::text, i.indexrelid
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c
                        WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'));

    -- What it does not handle: then nothing is dropped and the runbook's order runs.
    SELECT CASE
        WHEN NOT EXISTS (SELECT 1 FROM pg_temp.restore_assets_fastload_objects)
            THEN 'no index or key to defer'
        WHEN EXISTS (SELECT 1 FROM pg_temp.restore_assets_fastload_objects o
                       JOIN pg_catalog.pg_class t ON t.oid = o.rel
                      WHERE t.relkind <> 'r' OR t.relispartition)
            THEN 'an index or key on a partitioned table, a partition or a materialized view'
        WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c
                      WHERE c.oid IN (SELECT constraint_oid
                                        FROM pg_temp.restore_assets_fastload_objects)
                        AND (c.conparentid <> 0 OR NOT c.conislocal OR c.coninhcount > 0))
            THEN 'an inherited key'
        WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                        AND d.objid IN (SELECT rel FROM pg_temp.restore_assets_fastload_objects)
                        AND d.deptype = 'e')
            THEN 'a table of an extension'
        WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_class ic
                      WHERE ic.oid IN (SELECT index_oid FROM pg_temp.restore_assets_fastload_objects
                                        WHERE contype IN ('p', 'u', 'x', 'i'))
                        AND ic.reltablespace <> 0)
            THEN 'an index in a tablespace of its own'
        WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_class ic
                      WHERE ic.oid IN (SELECT index_oid FROM pg_temp.restore_assets_fastload_objects
                                        WHERE contype = 'x')
                        AND ic.reloptions IS NOT NULL)
            THEN 'an exclusion constraint with storage parameters'
        WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                      WHERE i.indexrelid IN (SELECT index_oid
                                               FROM pg_temp.restore_assets_fastload_objects)
                        AND NOT (i.indisvalid AND i.indisready AND i.indislive))
            THEN 'an index not valid'
        -- Re-added after the seed, a NOT VALID foreign key would never check the seed's rows,
        -- which psql's order checks as they are inserted: the fast load must not accept more.
        WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c
                      WHERE c.oid IN (SELECT constraint_oid
                                        FROM pg_temp.restore_assets_fastload_objects)
                        AND c.contype = 'f' AND NOT c.convalidated)
            THEN 'a foreign key NOT VALID (its rows are checked only as they are inserted)'
    END INTO why;
    IF why IS NOT NULL THEN
        UPDATE pg_temp.restore_assets_fastload_state SET decision = 'plain: ' || why;
        RETURN 'plain: ' || why;
    END IF;

    -- How to build each again, as the server prints it.
    -- A primary key or unique constraint: its index as pg_get_indexdef prints it (with its
    -- storage parameters, which pg_get_constraintdef leaves out), then the constraint on it.
    INSERT INTO pg_temp.restore_assets_fastload (step, ddl, object)
    SELECT 1, ddl, pg_catalog.format('%I on %s', name, rel::pg_catalog.regclass) FROM (
        SELECT o.rel, o.name, s.n, s.ddl
          FROM pg_temp.restore_assets_fastload_objects o
          JOIN pg_catalog.pg_constraint c ON c.oid = o.constraint_oid
         CROSS JOIN LATERAL (VALUES
               (1, pg_catalog.pg_get_indexdef(o.index_oid)),
               (2, pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s USING INDEX %I%s',
                        o.rel::pg_catalog.regclass, o.name,
                        CASE o.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END, o.name,
                        CASE WHEN c.condeferred THEN ' DEFERRABLE INITIALLY DEFERRED'
                             WHEN c.condeferrable THEN ' DEFERRABLE' ELSE '' END))) s(n, ddl)
         WHERE o.contype IN ('p', 'u')) keys
     ORDER BY rel, name, n;
    INSERT INTO pg_temp.restore_assets_fastload (step, ddl, object)
    SELECT CASE o.contype WHEN 'f' THEN 3 ELSE 1 END,
           pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s', o.rel::pg_catalog.regclass,
                             o.name, pg_catalog.pg_get_constraintdef(o.constraint_oid)),
           pg_catalog.format('%I on %s', o.name, o.rel::pg_catalog.regclass)
      FROM pg_temp.restore_assets_fastload_objects o
     WHERE o.contype IN ('x', 'f') ORDER BY o.rel, o.name;
    INSERT INTO pg_temp.restore_assets_fastload (step, ddl, object)
    SELECT CASE WHEN i.indisunique THEN 1 ELSE 2 END, pg_catalog.pg_get_indexdef(o.index_oid),
           pg_catalog.format('%I on %s', o.name, o.rel::pg_catalog.regclass)
      FROM pg_temp.restore_assets_fastload_objects o
      JOIN pg_catalog.pg_index i ON i.indexrelid = o.index_oid
     WHERE o.contype = 'i' ORDER BY o.rel, o.name;
    -- What belongs to them: comments, CLUSTER mark, replica identity, statistics targets.
    INSERT INTO pg_temp.restore_assets_fastload (step, ddl, object)
    SELECT 4, pg_catalog.format('COMMENT ON CONSTRAINT %I ON %s IS %L', o.name,
                                o.rel::pg_catalog.regclass,
                                pg_catalog.obj_description(o.constraint_oid, 'pg_constraint')),
           pg_catalog.format('the comment of %I on %s', o.name, o.rel::pg_catalog.regclass)
      FROM pg_temp.restore_assets_fastload_objects o
     WHERE o.contype <> 'i'
       AND pg_catalog.obj_description(o.constraint_oid, 'pg_constraint') IS NOT NULL;
    INSERT INTO pg_temp.restore_assets_fastload (step, ddl, object)
    SELECT 4, ddl, 'what belongs to an index' FROM (
        SELECT pg_catalog.format('COMMENT ON INDEX %s IS %L', i.indexrelid::pg_catalog.regclass,
                                 pg_catalog.obj_description(i.indexrelid, 'pg_class')) AS ddl
          FROM pg_catalog.pg_index i
         WHERE pg_catalog.obj_description(i.indexrelid, 'pg_class') IS NOT NULL
           AND i.indexrelid IN (SELECT index_oid FROM pg_temp.restore_assets_fastload_objects
                                 WHERE contype <> 'f')
        UNION ALL
        SELECT pg_catalog.format('ALTER TABLE %s CLUSTER ON %I', i.indrelid::pg_catalog.regclass,
                                 ic.relname)
          FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indisclustered
           AND i.indexrelid IN (SELECT index_oid FROM pg_temp.restore_assets_fastload_objects
                                 WHERE contype <> 'f')
        UNION ALL
        SELECT pg_catalog.format('ALTER TABLE %s REPLICA IDENTITY USING INDEX %I',
                                 i.indrelid::pg_catalog.regclass, ic.relname)
          FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indisreplident
           AND i.indexrelid IN (SELECT index_oid FROM pg_temp.restore_assets_fastload_objects
                                 WHERE contype <> 'f')
        UNION ALL
        SELECT pg_catalog.format('ALTER INDEX %s ALTER COLUMN %s SET STATISTICS %s',
                                 a.attrelid::pg_catalog.regclass, a.attnum, a.attstattarget)
          FROM pg_catalog.pg_attribute a
         WHERE a.attstattarget >= 0
           AND a.attrelid IN (SELECT index_oid FROM pg_temp.restore_assets_fastload_objects
                               WHERE contype <> 'f')
    ) extras ORDER BY ddl;

    -- Drop them: foreign keys first, then keys, then indexes. Never CASCADE: anything else that
    -- depends on one (a view grouping by a key) stops the drops, and the runbook's order runs.
    BEGIN
        FOREACH statement IN ARRAY (
            SELECT array_agg(CASE WHEN o.contype = 'i'
                        THEN pg_catalog.format('DROP INDEX %s', o.index_oid::pg_catalog.regclass)
                        ELSE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I',
                                               o.rel::pg_catalog.regclass, o.name) END
                   ORDER BY CASE o.contype WHEN 'f' THEN 1 WHEN 'i' THEN 3 ELSE 2 END, o.rel,
                            o.name)
              FROM pg_temp.restore_assets_fastload_objects o)
        LOOP
            EXECUTE statement;
        END LOOP;
    EXCEPTION WHEN OTHERS THEN  -- the drops are undone (a savepoint): the schema is as it was
        DELETE FROM pg_temp.restore_assets_fastload;
        why := 'plain: an index or key could not be dropped (' || SQLSTATE || ')';
        UPDATE pg_temp.restore_assets_fastload_state SET decision = why;
        RETURN why;
    END;
    SELECT count(*) INTO deferred FROM pg_temp.restore_assets_fastload_objects;
    UPDATE pg_temp.restore_assets_fastload_state SET decision = 'fast';
    RETURN 'fast: ' || deferred || ' indexes and keys deferred';
END
$defer$;

SELECT '@NONCE@ ' || pg_temp.restore_assets_defer() AS restore_assets_fastload;
