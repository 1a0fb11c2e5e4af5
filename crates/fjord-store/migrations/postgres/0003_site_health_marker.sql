-- Text a site's front page must contain for a health check to pass (after a migrate, restore,
-- clone or sync), e.g. a phrase of its footer; NULL checks the status only.
ALTER TABLE sites ADD COLUMN health_marker TEXT;
