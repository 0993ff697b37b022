-- The relay's records (server/src/store/mod.rs, `Kind`): one table per
-- kind, a column for each part of the key, the primary key in the key's
-- order, and the record's bytes exactly as the sled engine keeps them.
-- Identifiers are 16 bytes; indexes are unsigned and never negative here.

CREATE TABLE sessions (
    session bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (session)
);

CREATE TABLE rosters (
    session bytea NOT NULL,
    version bigint NOT NULL CHECK (version >= 0),
    value bytea NOT NULL,
    PRIMARY KEY (session, version)
);

CREATE TABLE bundles (
    session bytea NOT NULL,
    seq bigint NOT NULL CHECK (seq >= 0),
    value bytea NOT NULL,
    PRIMARY KEY (session, seq)
);

CREATE TABLE envelopes (
    session bytea NOT NULL,
    room bytea NOT NULL,
    idx bigint NOT NULL CHECK (idx >= 0),
    value bytea NOT NULL,
    PRIMARY KEY (session, room, idx)
);

CREATE TABLE invites (
    session bytea NOT NULL,
    invite bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (session, invite)
);

CREATE TABLE waiting (
    session bytea NOT NULL,
    invite bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (session, invite)
);

CREATE TABLE presence (
    session bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (session)
);

CREATE TABLE documents (
    session bytea NOT NULL,
    file bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (session, file)
);

CREATE TABLE chunks (
    session bytea NOT NULL,
    file bytea NOT NULL,
    idx bigint NOT NULL CHECK (idx >= 0 AND idx <= 4294967295),
    value bytea NOT NULL,
    PRIMARY KEY (session, file, idx)
);

CREATE TABLE deletions (
    session bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (session)
);
