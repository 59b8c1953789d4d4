-- 0003_query_indexes: indexes for fleet-wide queries (central.Fleet).
--
-- A rule filter is "rules @> ARRAY[name]" newest first. The GIN index of
-- 0001 finds the rows but not in time order, so a common rule made the
-- query sort every record it ever fired on. Rules fire on few records:
-- walking those alone, newest first, and testing the array stops after a
-- page.
CREATE INDEX sessctl_leaves_ruled ON sessctl_leaves (start_time DESC, origin_id DESC, seq DESC) WHERE rules IS NOT NULL;
