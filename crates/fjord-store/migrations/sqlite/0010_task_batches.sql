-- Batch tasks (platform-migrate) queue other tasks: each of those names its batch in parent_id, and
-- the batch keeps its summary (its whole state, JSON) in result, rewritten as its sites progress.
ALTER TABLE tasks ADD COLUMN parent_id INTEGER;
ALTER TABLE tasks ADD COLUMN result TEXT;
CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;
