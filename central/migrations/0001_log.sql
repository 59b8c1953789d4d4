-- 0001_log: the session logs shipped by the replicas of a fleet.
--
-- Every replica keeps its own bbolt log and ships it here (central.Shipper).
-- Rows are keyed by (origin, seq) and never updated: a leaf is the stored
-- bytes exactly (FORMAT.md §2), a body is its salt and bytes (§3), a
-- checkpoint the signed note (§5). The columns extracted from a leaf serve
-- queries only; `sessctl verify --central` recomputes everything from the
-- leaf, body and note bytes and trusts no other column.

-- One row per log (origin "<hostname>/<log uuid>", from its genesis record).
CREATE TABLE sessctl_origins (
	id             integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	origin         text NOT NULL UNIQUE,
	-- The note verifier key of the log's checkpoints, as first shipped.
	public_key     text NOT NULL,
	first_seen     timestamptz NOT NULL DEFAULT now(),
	-- Set when a shipper later offered another key for this origin; the
	-- shipper then stops and verify reports the origin.
	key_changed    boolean NOT NULL DEFAULT false,
	offered_key    text,
	key_changed_at timestamptz,
	-- When the replica last shipped (a hint for operators).
	last_shipped   timestamptz
);

CREATE TABLE sessctl_leaves (
	origin_id  integer NOT NULL REFERENCES sessctl_origins (id),
	seq        bigint NOT NULL CHECK (seq >= 0),
	-- The leaf as stored: "sessctl/leaf/v1\n" ‖ JSON.
	leaf       bytea NOT NULL,
	-- SHA-256(0x00 ‖ leaf) as shipped (a hint: verify recomputes it).
	leaf_hash  bytea NOT NULL,
	-- Extracted from the leaf for queries (NULL when empty).
	start_time timestamptz NOT NULL,
	end_time   timestamptz,
	kind       text NOT NULL,
	session_id text,
	repository text,    -- claim repository, else project_path
	workflow   text,    -- claim workflow
	run        text,    -- claim run_id, else pipeline_id
	sha        text,    -- claim sha
	actor      text,    -- claim actor, else user_login
	runner     text,    -- identity.runner
	outcome    text,
	host       text,
	model      text,
	status     integer,
	rules      text[],  -- distinct names of the rules that fired
	PRIMARY KEY (origin_id, seq)
);

-- Newest first across the fleet, and per filter: each filter column with
-- the time, so that "col = $1 ORDER BY start_time DESC LIMIT n" reads only
-- the rows it returns.
CREATE INDEX sessctl_leaves_time ON sessctl_leaves (start_time DESC, origin_id, seq);
CREATE INDEX sessctl_leaves_session ON sessctl_leaves (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX sessctl_leaves_kind ON sessctl_leaves (kind, start_time DESC);
CREATE INDEX sessctl_leaves_outcome ON sessctl_leaves (outcome, start_time DESC) WHERE outcome IS NOT NULL;
CREATE INDEX sessctl_leaves_runner ON sessctl_leaves (runner, start_time DESC) WHERE runner IS NOT NULL;
CREATE INDEX sessctl_leaves_repository ON sessctl_leaves (repository, start_time DESC) WHERE repository IS NOT NULL;
CREATE INDEX sessctl_leaves_workflow ON sessctl_leaves (workflow, start_time DESC) WHERE workflow IS NOT NULL;
CREATE INDEX sessctl_leaves_run ON sessctl_leaves (run, start_time DESC) WHERE run IS NOT NULL;
CREATE INDEX sessctl_leaves_sha ON sessctl_leaves (sha text_pattern_ops, start_time DESC) WHERE sha IS NOT NULL;
CREATE INDEX sessctl_leaves_actor ON sessctl_leaves (actor, start_time DESC) WHERE actor IS NOT NULL;
CREATE INDEX sessctl_leaves_host ON sessctl_leaves (host, start_time DESC) WHERE host IS NOT NULL;
CREATE INDEX sessctl_leaves_model ON sessctl_leaves (model, start_time DESC) WHERE model IS NOT NULL;
CREATE INDEX sessctl_leaves_rules ON sessctl_leaves USING gin (rules) WHERE rules IS NOT NULL;

-- Bodies of records recorded in full: the stored salt and bytes (what the
-- runner saw, after masking). A body pruned on the replica before it was
-- ever shipped has no row; shipped bodies stay here.
CREATE TABLE sessctl_bodies (
	origin_id integer NOT NULL REFERENCES sessctl_origins (id),
	seq       bigint NOT NULL,
	part      text NOT NULL CHECK (part IN ('request', 'response')),
	salt      bytea NOT NULL,
	body      bytea NOT NULL,
	PRIMARY KEY (origin_id, seq, part)
);

-- Signed checkpoints (C2SP tlog-checkpoint notes), keyed by tree size.
CREATE TABLE sessctl_checkpoints (
	origin_id  integer NOT NULL REFERENCES sessctl_origins (id),
	size       bigint NOT NULL CHECK (size > 0),
	note       bytea NOT NULL,
	shipped_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (origin_id, size)
);
