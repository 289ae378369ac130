-- 0001: the catalog of the main database.
--
-- Everything lives in schema gobucardo. The rules that keep the catalog sane
-- are constraints here, not only checks in mcp, so that hand-written SQL
-- cannot store what mcp would refuse. Errors raised by gobucardo's own
-- triggers use SQLSTATE class GB; their message is a sentence for humans.

-- A name that is safe in argv, in NOTIFY payloads and in Bucardo-style
-- "A:source,B:target" lists: a letter, then letters, digits, _ or -.
CREATE DOMAIN gobucardo.object_name AS text
    CONSTRAINT object_name_valid CHECK (
        VALUE ~ '^[A-Za-z][A-Za-z0-9_-]*$'
        AND octet_length(VALUE) <= 63
        AND lower(VALUE) <> 'all');

CREATE FUNCTION gobucardo.conflict_strategy_valid(s text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT s IS NULL
        OR s IN ('bucardo_latest', 'bucardo_latest_all_tables', 'bucardo_source',
                 'bucardo_skip', 'bucardo_random', 'bucardo_abort', 'custom')
        -- an ordered list of db names, separated by single spaces
        OR s ~ '^[A-Za-z][A-Za-z0-9_-]*( [A-Za-z][A-Za-z0-9_-]*)*$'
           AND s !~ '(^| )bucardo_'
$$;

-- conflict_strategy_dbs returns the db names of an ordered-list strategy, or
-- an empty array for the named strategies.
CREATE FUNCTION gobucardo.conflict_strategy_dbs(s text) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN s IS NULL OR s LIKE 'bucardo\_%' OR s = 'custom' THEN '{}'::text[]
                ELSE string_to_array(s, ' ') END
$$;

CREATE TABLE gobucardo.db (
    name        gobucardo.object_name PRIMARY KEY,
    -- Either a whole connection string (dsn=) or its parts.
    dsn         text CHECK (dsn <> ''),
    host        text CHECK (host <> ''),
    port        integer CHECK (port BETWEEN 1 AND 65535),
    dbname      text CHECK (dbname <> ''),
    dbuser      text CHECK (dbuser <> ''),
    dbpass      text,
    sslmode     text CHECK (sslmode IN ('disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full')),
    service     text CHECK (service <> ''),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    makedelta   boolean NOT NULL DEFAULT false,
    created     timestamptz NOT NULL DEFAULT now(),
    updated     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT db_dsn_or_parts CHECK (
        CASE WHEN dsn IS NOT NULL
             THEN num_nonnulls(host, port, dbname, dbuser, dbpass, sslmode, service) = 0
             ELSE num_nonnulls(dbname, service) > 0 END)
);
COMMENT ON TABLE gobucardo.db IS 'Replicated databases and how to reach them. dbpass is never shown by mcp.';

CREATE TABLE gobucardo.dbgroup (
    name        gobucardo.object_name PRIMARY KEY,
    created     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gobucardo.dbgroup_member (
    dbgroup     text NOT NULL REFERENCES gobucardo.dbgroup (name) ON UPDATE CASCADE ON DELETE CASCADE,
    db          text NOT NULL REFERENCES gobucardo.db (name) ON UPDATE CASCADE,
    role        text NOT NULL CHECK (role IN ('source', 'target', 'fullcopy')),
    position    integer NOT NULL CHECK (position >= 0),
    PRIMARY KEY (dbgroup, db),
    UNIQUE (dbgroup, position) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ON gobucardo.dbgroup_member (db);

-- A relation (Bucardo's "goat"): a table or sequence of one db, with the key
-- that mcp found for it (the primary key, else the best unique index on NOT
-- NULL columns; none for a table that only fullcopy targets may take).
CREATE TABLE gobucardo.relation (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    db                text NOT NULL REFERENCES gobucardo.db (name) ON UPDATE CASCADE,
    schema_name       text NOT NULL CHECK (schema_name <> ''),
    rel_name          text NOT NULL CHECK (rel_name <> ''),
    kind              text NOT NULL CHECK (kind IN ('table', 'sequence')),
    key_columns       text[],
    key_types         text[],
    key_kind          text CHECK (key_kind IN ('primary key', 'unique index')),
    key_index         text,
    conflict_strategy text CHECK (gobucardo.conflict_strategy_valid(conflict_strategy)),
    makedelta         boolean,
    created           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (db, schema_name, rel_name),
    UNIQUE (id, db),
    CONSTRAINT relation_sequence_plain CHECK (
        kind = 'table' OR num_nonnulls(key_columns, conflict_strategy, makedelta) = 0),
    CONSTRAINT relation_key_complete CHECK (
        num_nonnulls(key_columns, key_types, key_kind, key_index) IN (0, 4)),
    CONSTRAINT relation_key_shape CHECK (
        key_columns IS NULL
        OR (cardinality(key_columns) > 0
            AND cardinality(key_columns) = cardinality(key_types)
            AND array_position(key_columns, NULL) IS NULL
            AND array_position(key_types, NULL) IS NULL))
);
COMMENT ON COLUMN gobucardo.relation.makedelta IS 'NULL: as the db says; true/false: override for this table.';

-- A relgroup (Bucardo's "herd"): an ordered set of relations of one db.
CREATE TABLE gobucardo.relgroup (
    name        gobucardo.object_name PRIMARY KEY,
    db          text REFERENCES gobucardo.db (name) ON UPDATE CASCADE,
    created     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, db)
);

CREATE TABLE gobucardo.relgroup_member (
    relgroup    text NOT NULL,
    relation_id bigint NOT NULL,
    db          text NOT NULL,
    position    integer NOT NULL CHECK (position >= 0),
    PRIMARY KEY (relgroup, relation_id),
    UNIQUE (relgroup, position) DEFERRABLE INITIALLY DEFERRED,
    -- Every member comes from the relgroup's db.
    FOREIGN KEY (relgroup, db) REFERENCES gobucardo.relgroup (name, db) ON UPDATE CASCADE ON DELETE CASCADE,
    FOREIGN KEY (relation_id, db) REFERENCES gobucardo.relation (id, db) ON UPDATE CASCADE ON DELETE CASCADE
);
CREATE INDEX ON gobucardo.relgroup_member (relation_id);

CREATE TABLE gobucardo.sync (
    name              gobucardo.object_name PRIMARY KEY
                      CONSTRAINT sync_name_reserved CHECK (lower(name) NOT IN ('pushdelta', 'fullcopy', 'swap', 'sync')),
    relgroup          text NOT NULL REFERENCES gobucardo.relgroup (name) ON UPDATE CASCADE,
    dbgroup           text NOT NULL REFERENCES gobucardo.dbgroup (name) ON UPDATE CASCADE,
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    autokick          boolean NOT NULL DEFAULT true,
    checktime         interval CHECK (checktime > '0'::interval),
    conflict_strategy text NOT NULL DEFAULT 'bucardo_latest'
                      CHECK (gobucardo.conflict_strategy_valid(conflict_strategy)),
    onetimecopy       smallint NOT NULL DEFAULT 0 CHECK (onetimecopy IN (0, 1, 2)),
    stayalive         boolean NOT NULL DEFAULT true,
    kidsalive         boolean NOT NULL DEFAULT true,
    isolation_level   text NOT NULL DEFAULT 'repeatable read'
                      CHECK (isolation_level IN ('repeatable read', 'serializable')),
    lifetime          interval CHECK (lifetime > '0'::interval),
    maxkicks          integer NOT NULL DEFAULT 0 CHECK (maxkicks >= 0),
    makedelta         boolean NOT NULL DEFAULT false,
    commit_every      integer CHECK (commit_every > 0),
    deletemethod      text NOT NULL DEFAULT 'delete' CHECK (deletemethod IN ('delete', 'truncate', 'truncate_cascade')),
    created           timestamptz NOT NULL DEFAULT now(),
    updated           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON gobucardo.sync (relgroup);
CREATE INDEX ON gobucardo.sync (dbgroup);

-- Custom code: a plugin binary, pinned by its sha256, attached to syncs or
-- tables at one hook point.
CREATE TABLE gobucardo.customcode (
    name        gobucardo.object_name PRIMARY KEY,
    plugin      text NOT NULL CHECK (plugin LIKE '/%'),
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    whenrun     text NOT NULL CHECK (whenrun IN ('conflict', 'exception', 'before_sync', 'after_sync', 'before_txn', 'after_txn')),
    priority    integer NOT NULL DEFAULT 0,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    about       text,
    created     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gobucardo.customcode_map (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL REFERENCES gobucardo.customcode (name) ON UPDATE CASCADE ON DELETE CASCADE,
    sync        text REFERENCES gobucardo.sync (name) ON UPDATE CASCADE ON DELETE CASCADE,
    relation_id bigint REFERENCES gobucardo.relation (id) ON DELETE CASCADE,
    priority    integer NOT NULL DEFAULT 0,
    active      boolean NOT NULL DEFAULT true,
    CONSTRAINT customcode_map_one_target CHECK (num_nonnulls(sync, relation_id) = 1),
    UNIQUE (code, sync),
    UNIQUE (code, relation_id)
);
CREATE INDEX ON gobucardo.customcode_map (sync);
CREATE INDEX ON gobucardo.customcode_map (relation_id);

-- Run history. sync_name is kept when the sync is removed.
CREATE TABLE gobucardo.syncrun (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sync        text REFERENCES gobucardo.sync (name) ON UPDATE CASCADE ON DELETE SET NULL,
    sync_name   text NOT NULL,
    started     timestamptz NOT NULL DEFAULT now(),
    ended       timestamptz,
    state       text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'good', 'empty', 'bad')),
    status      text NOT NULL DEFAULT '',
    deletes     bigint NOT NULL DEFAULT 0 CHECK (deletes >= 0),
    inserts     bigint NOT NULL DEFAULT 0 CHECK (inserts >= 0),
    truncates   bigint NOT NULL DEFAULT 0 CHECK (truncates >= 0),
    conflicts   bigint NOT NULL DEFAULT 0 CHECK (conflicts >= 0),
    pid         integer,
    host        text,
    CONSTRAINT syncrun_ended CHECK ((state = 'running') = (ended IS NULL) AND (ended IS NULL OR ended >= started))
);
CREATE INDEX ON gobucardo.syncrun (sync_name, started DESC);
CREATE INDEX syncrun_good ON gobucardo.syncrun (sync_name, ended DESC) WHERE state IN ('good', 'empty');
CREATE INDEX syncrun_bad ON gobucardo.syncrun (sync_name, ended DESC) WHERE state = 'bad';
CREATE INDEX syncrun_running ON gobucardo.syncrun (sync_name) WHERE state = 'running';

CREATE TABLE gobucardo.conflict_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    syncrun_id  bigint REFERENCES gobucardo.syncrun (id) ON DELETE SET NULL,
    sync_name   text NOT NULL,
    schema_name text NOT NULL,
    rel_name    text NOT NULL,
    key         jsonb NOT NULL,
    strategy    text NOT NULL,
    winner      text,                              -- NULL when the strategy skipped the row
    losers      jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(losers) = 'array'),
    resolved_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON gobucardo.conflict_log (sync_name, resolved_at DESC);

-- Rows an exception handler set aside, to be re-applied by `mcp parked retry`.
CREATE TABLE gobucardo.parked (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sync_name   text NOT NULL,
    schema_name text NOT NULL,
    rel_name    text NOT NULL,
    source_db   text NOT NULL,
    key         jsonb NOT NULL,
    row_data    jsonb,                             -- NULL: the row is absent on the source
    sqlstate    text,
    error       text NOT NULL,
    created     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON gobucardo.parked (sync_name, created);

-- Run-time state of a sync that outlives processes (pause, stall reasons).
CREATE TABLE gobucardo.sync_state (
    sync        text PRIMARY KEY REFERENCES gobucardo.sync (name) ON UPDATE CASCADE ON DELETE CASCADE,
    paused      boolean NOT NULL DEFAULT false,
    reason      text,
    updated     timestamptz NOT NULL DEFAULT now()
);

-- The daemon's process tree, as last reported, for `mcp ps` from any host.
CREATE TABLE gobucardo.process (
    host        text NOT NULL,
    pid         integer NOT NULL CHECK (pid > 0),
    ppid        integer,
    role        text NOT NULL CHECK (role IN ('mcp', 'controller', 'kid', 'plugin')),
    sync        text,
    state       text NOT NULL DEFAULT '',
    detail      text NOT NULL DEFAULT '',
    started     timestamptz NOT NULL DEFAULT now(),
    updated     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host, pid)
);

-- Lines for the running MCP's log (`mcp message`).
CREATE TABLE gobucardo.log_message (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message     text NOT NULL,
    created     timestamptz NOT NULL DEFAULT now()
);

-- sync_problems lists, as sentences, every rule the sync breaks that the
-- catalog alone can decide. mcp shows them; the constraint triggers below
-- refuse to commit a catalog where any sync has one.
CREATE FUNCTION gobucardo.sync_problems(sync_name text) RETURNS SETOF text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s         gobucardo.sync;
    sources   integer;
    deltaroles boolean;
    bad       record;
BEGIN
    SELECT * INTO s FROM gobucardo.sync WHERE name = sync_name;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT count(*) FILTER (WHERE role = 'source'),
           count(*) FILTER (WHERE role = 'source') > 1 OR bool_or(role = 'target')
      INTO sources, deltaroles
      FROM gobucardo.dbgroup_member WHERE dbgroup = s.dbgroup;
    IF sources = 0 THEN
        RETURN NEXT format('sync %s has no source database: give a db of dbgroup %s the role source',
                           s.name, s.dbgroup);
    END IF;
    FOR bad IN
        SELECT DISTINCT n.name AS db, n.what
          FROM (SELECT unnest(gobucardo.conflict_strategy_dbs(s.conflict_strategy)) AS name,
                       'the conflict_strategy of the sync' AS what
                UNION ALL
                SELECT unnest(gobucardo.conflict_strategy_dbs(r.conflict_strategy)),
                       format('the conflict_strategy of table %I.%I', r.schema_name, r.rel_name)
                  FROM gobucardo.relgroup_member m
                  JOIN gobucardo.relation r ON r.id = m.relation_id
                 WHERE m.relgroup = s.relgroup) n
         WHERE NOT EXISTS (SELECT 1 FROM gobucardo.dbgroup_member d
                            WHERE d.dbgroup = s.dbgroup AND d.db = n.name AND d.role = 'source')
    LOOP
        RETURN NEXT format('sync %s: %s names %s, which is not a source db of dbgroup %s; list only source dbs',
                           s.name, bad.what, bad.db, s.dbgroup);
    END LOOP;
    IF deltaroles THEN
        FOR bad IN
            SELECT r.schema_name, r.rel_name
              FROM gobucardo.relgroup_member m
              JOIN gobucardo.relation r ON r.id = m.relation_id
             WHERE m.relgroup = s.relgroup AND r.kind = 'table' AND r.key_columns IS NULL
             ORDER BY m.position
        LOOP
            RETURN NEXT format('sync %s replicates by delta, but table %I.%I has no primary key or unique index on NOT NULL columns: '
                               'add a primary key, or make every other db a fullcopy target (dbs=A:source,B:fullcopy)',
                               s.name, bad.schema_name, bad.rel_name);
        END LOOP;
    END IF;
END
$$;

CREATE FUNCTION gobucardo.check_syncs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    names    text[];
    problem  text;
BEGIN
    IF TG_TABLE_NAME = 'sync' THEN
        names := ARRAY[NEW.name];
    ELSIF TG_TABLE_NAME = 'dbgroup_member' THEN
        SELECT array_agg(name) INTO names FROM gobucardo.sync
         WHERE dbgroup IN (CASE WHEN TG_OP <> 'DELETE' THEN NEW.dbgroup END,
                           CASE WHEN TG_OP <> 'INSERT' THEN OLD.dbgroup END);
    ELSIF TG_TABLE_NAME = 'relgroup_member' THEN
        SELECT array_agg(name) INTO names FROM gobucardo.sync WHERE relgroup = NEW.relgroup;
    ELSIF TG_TABLE_NAME = 'relation' THEN
        SELECT array_agg(DISTINCT s.name) INTO names
          FROM gobucardo.sync s JOIN gobucardo.relgroup_member m ON m.relgroup = s.relgroup
         WHERE m.relation_id = NEW.id;
    END IF;
    SELECT p INTO problem
      FROM unnest(names) AS n(name), gobucardo.sync_problems(n.name) AS p
     LIMIT 1;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'GB001', MESSAGE = problem;
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER sync_sane AFTER INSERT OR UPDATE ON gobucardo.sync
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gobucardo.check_syncs();
CREATE CONSTRAINT TRIGGER sync_sane AFTER INSERT OR UPDATE OR DELETE ON gobucardo.dbgroup_member
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gobucardo.check_syncs();
CREATE CONSTRAINT TRIGGER sync_sane AFTER INSERT OR UPDATE ON gobucardo.relgroup_member
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gobucardo.check_syncs();
CREATE CONSTRAINT TRIGGER sync_sane AFTER UPDATE OF key_columns, conflict_strategy ON gobucardo.relation
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gobucardo.check_syncs();

-- A notification channel for admin requests to the running MCP.
COMMENT ON SCHEMA gobucardo IS 'gobucardo catalog; the daemon LISTENs on gobucardo_admin';
