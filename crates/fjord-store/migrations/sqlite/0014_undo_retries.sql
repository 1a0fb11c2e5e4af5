-- Steps whose undo failed are retried by the daemon until they succeed (sqlite dialect; keep in step
-- with the other dialect): this index keeps its search cheap however long the history of steps grows.
CREATE INDEX task_steps_undo_failed ON task_steps (task_id) WHERE status = 'undo-failed';
