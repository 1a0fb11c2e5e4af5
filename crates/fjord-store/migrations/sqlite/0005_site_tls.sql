-- A site's HTTPS settings beside its mode (HSTS, where its certificate comes from) and what is known
-- of its installed certificate (names, expiry, the last failure and its back-off), as JSON
-- (`fjord_core::SiteTls`); NULL for sites that never had HTTPS.
ALTER TABLE sites ADD COLUMN tls TEXT;
