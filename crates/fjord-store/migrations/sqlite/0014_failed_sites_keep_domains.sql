-- A failed site now keeps its domain, so every command and page can show, retry and delete it by
-- that domain, and no second site can take the domain meanwhile (sqlite dialect; keep in step with the
-- other). Failed sites from before had theirs freed: the newest failed site of a domain no site holds
-- gets it back; the others (whose domain another site has since taken, or an older failed duplicate)
-- can never be reached by their domain again and are marked deleted.
INSERT INTO site_domains (domain, site_id, is_alias)
SELECT s.domain, s.id, 0 FROM sites s
WHERE s.status = 'failed'
    AND NOT EXISTS (SELECT 1 FROM site_domains d WHERE d.domain = s.domain)
    AND s.id = (SELECT MAX(o.id) FROM sites o WHERE o.status = 'failed' AND o.domain = s.domain);

UPDATE sites SET status = 'deleted'
WHERE status = 'failed' AND NOT EXISTS (SELECT 1 FROM site_domains d WHERE d.site_id = sites.id);
