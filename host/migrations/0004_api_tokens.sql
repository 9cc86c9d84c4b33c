-- API tokens. Only the SHA-256 of a token is stored; the token itself is
-- shown once, when it is made. A revoked token keeps its row (so its name
-- stays taken and the audit trail's references keep their meaning).
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    -- viewer | operator | auditor | admin
    role TEXT NOT NULL,
    -- hex SHA-256 of the whole token
    hash TEXT NOT NULL UNIQUE,
    created_at_us BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    last_used_at_us BIGINT,
    revoked_at_us BIGINT
);
