-- Sites per status, kept by a trigger, so a list or dashboard of thousands of sites does not count
-- them row by row on every request.
CREATE TABLE site_counts (
    status TEXT PRIMARY KEY,
    n BIGINT NOT NULL
);

INSERT INTO site_counts (status, n) SELECT status, COUNT(*) FROM sites GROUP BY status;

CREATE FUNCTION fjord_site_counts() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status = NEW.status THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE site_counts SET n = n - 1 WHERE status = OLD.status;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO site_counts (status, n) VALUES (NEW.status, 1)
            ON CONFLICT (status) DO UPDATE SET n = site_counts.n + 1;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER site_counts AFTER INSERT OR DELETE OR UPDATE OF status ON sites
    FOR EACH ROW EXECUTE FUNCTION fjord_site_counts();
