-- Several relay nodes on one database (docs/cluster.md).

-- Each node while it lives: it renews `alive_until` every third of its
-- lease. A node whose `alive_until` has passed holds nothing.
CREATE TABLE nodes (
    node text PRIMARY KEY,
    alive_until timestamptz NOT NULL
);

-- Which node decides for each session: the lease is good while that node
-- lives. A node takes a session whose node is dead.
CREATE TABLE owners (
    session bytea PRIMARY KEY,
    node text NOT NULL
);
CREATE INDEX owners_by_node ON owners (node);

-- The relay identity every node of the cluster holds: the first node to
-- start writes it; a node with another key refuses to start.
CREATE TABLE relay_identity (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    fingerprint bytea NOT NULL
);
