-- Sites per status, kept by triggers, so a list or dashboard of thousands of sites does not count
-- them row by row on every request.
CREATE TABLE site_counts (
    status TEXT PRIMARY KEY,
    n BIGINT NOT NULL
);

INSERT INTO site_counts (status, n) SELECT status, COUNT(*) FROM sites GROUP BY status;

CREATE TRIGGER site_counts_insert AFTER INSERT ON sites
BEGIN
    INSERT INTO site_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER site_counts_delete AFTER DELETE ON sites
BEGIN
    UPDATE site_counts SET n = n - 1 WHERE status = OLD.status;
END;

CREATE TRIGGER site_counts_update AFTER UPDATE OF status ON sites WHEN OLD.status <> NEW.status
BEGIN
    UPDATE site_counts SET n = n - 1 WHERE status = OLD.status;
    INSERT INTO site_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;
