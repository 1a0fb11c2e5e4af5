-- What platform verify found in the codebase beyond app and version: install profiles, site-local
-- drush, the PHP version the code asks for, and site directories Fjord does not know (JSON).
ALTER TABLE platforms ADD COLUMN details TEXT;
