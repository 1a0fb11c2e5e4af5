-- The limits of a site's PHP-FPM pool (JSON: max_children, memory_limit, upload_max,
-- max_execution_time); NULL means the defaults.
ALTER TABLE sites ADD COLUMN php_limits TEXT;
