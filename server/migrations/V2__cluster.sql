-- Several relay nodes on one database (docs/cluster.md).

-- Which node decides for each session, and until when: a lease the node
-- renews while it lives. A node takes a session whose lease has run out.
CREATE TABLE owners (
    session bytea PRIMARY KEY,
    node text NOT NULL,
    lease_until timestamptz NOT NULL
);
CREATE INDEX owners_by_node ON owners (node);

-- The relay identity every node of the cluster holds: the first node to
-- start writes it; a node with another key refuses to start.
CREATE TABLE relay_identity (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    fingerprint bytea NOT NULL
);
