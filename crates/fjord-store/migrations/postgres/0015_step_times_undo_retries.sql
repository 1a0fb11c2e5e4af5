-- How long each step took, so a user and a benchmark see where a task's time goes. Steps whose
-- undo failed are retried by the daemon until they succeed (postgres dialect; keep in step
-- with the other dialect): this index keeps its search cheap however long the history of steps grows.
CREATE INDEX task_steps_undo_failed ON task_steps (task_id) WHERE status = 'undo-failed';
ALTER TABLE task_steps ADD COLUMN started_at BIGINT;
ALTER TABLE task_steps ADD COLUMN duration_ms BIGINT;
