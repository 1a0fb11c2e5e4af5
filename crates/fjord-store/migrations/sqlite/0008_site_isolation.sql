-- Whose Unix user a site's PHP runs as: 'site' (its own), 'client' (its client's), or 'shared' (the
-- web server's; only for tests). Existing sites move to their own user on their next verify.
ALTER TABLE sites ADD COLUMN isolation TEXT NOT NULL DEFAULT 'site';
