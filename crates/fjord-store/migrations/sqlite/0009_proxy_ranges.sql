-- Published address ranges of proxy providers (today: 'cloudflare'), as last refreshed by
-- `fjord proxy-ranges update`; `ranges` is a JSON array of CIDR blocks. Servers that trust a
-- provider keep a copy in their http service, refreshed with it.
CREATE TABLE proxy_ranges (
    name TEXT PRIMARY KEY,
    ranges TEXT NOT NULL,
    source TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
