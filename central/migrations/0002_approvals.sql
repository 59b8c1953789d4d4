-- 0002_approvals: the fleet's shared approval inbox (central.Inbox).
--
-- A replica that holds a request for approval writes it here; any replica's
-- admin API or UI, and `sessctl console`, list the pending rows. A decision
-- made elsewhere than on the holding replica is an ask: a row the holder
-- picks up (LISTEN/NOTIFY on channel sessctl_approvals, polling as a
-- fallback), hands to its own approval queue, which alone decides (approver
-- check, self-approval refusal, timeouts), and answers. The decision is
-- recorded in the holder's own log like any other.

CREATE TABLE sessctl_approvals (
	id          text PRIMARY KEY,
	-- Origin of the log of the replica holding the request.
	holder      text NOT NULL,
	-- The approval.Request as JSON (prompt preview included).
	request     jsonb NOT NULL,
	created     timestamptz NOT NULL,
	expires     timestamptz NOT NULL,
	decision    text NOT NULL DEFAULT 'pending'
	            CHECK (decision IN ('pending', 'approved', 'denied', 'timeout', 'canceled')),
	decided_by  text,
	reason      text,
	decided_at  timestamptz
);
CREATE INDEX sessctl_approvals_pending ON sessctl_approvals (created, id) WHERE decision = 'pending';
CREATE INDEX sessctl_approvals_holder ON sessctl_approvals (holder, decided_at);

CREATE TABLE sessctl_approval_asks (
	id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	approval_id  text NOT NULL REFERENCES sessctl_approvals (id) ON DELETE CASCADE,
	holder       text NOT NULL,
	decision     text NOT NULL CHECK (decision IN ('approved', 'denied')),
	decided_by   text NOT NULL,
	reason       text NOT NULL DEFAULT '',
	asked_at     timestamptz NOT NULL DEFAULT now(),
	-- Set by the holder when it takes the ask; an ask taken cannot be
	-- withdrawn by the asker.
	claimed_at   timestamptz,
	answered_at  timestamptz,
	-- The holder's answer: the approval.Decision, and when its queue
	-- refused, a code (unknown, already_decided, self_approval, ...) and
	-- the message; 'withdrawn' when the asker gave up before the holder
	-- took it.
	result       jsonb,
	error_code   text,
	error        text
);
CREATE INDEX sessctl_approval_asks_open ON sessctl_approval_asks (holder, id) WHERE answered_at IS NULL;
