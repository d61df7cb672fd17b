-- Schema version 1: devices, rejected sightings, firmware, rollouts and their targets, the
-- audit log. Portable SQL on purpose (plain TEXT/INTEGER columns, standard constraints):
-- a PostgreSQL backend will carry its own copy of these scripts with minimal changes.
-- Timestamps are INTEGER milliseconds since the Unix epoch (UTC); booleans are INTEGER 0/1;
-- nested values (strategy, TXT items, audit detail) are JSON text.

CREATE TABLE devices (
    id          TEXT PRIMARY KEY,
    hostname    TEXT NOT NULL,
    ip          TEXT NOT NULL,
    port        INTEGER NOT NULL,
    version     TEXT NOT NULL,
    project     TEXT,
    chip        TEXT,
    sha         TEXT,
    slot        TEXT,
    state       TEXT,
    proto       INTEGER NOT NULL,
    trust_key   TEXT,
    online      INTEGER NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    duplicate   TEXT
);

CREATE TABLE rejected_sightings (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    instance    TEXT NOT NULL,
    addr        TEXT,
    reason      TEXT NOT NULL,
    txt         TEXT NOT NULL
);
CREATE INDEX rejected_sightings_at ON rejected_sightings (at);

CREATE TABLE firmware (
    sha256          TEXT PRIMARY KEY,
    size            INTEGER NOT NULL,
    chip            TEXT NOT NULL,
    project         TEXT NOT NULL,
    version         TEXT NOT NULL,
    idf_version     TEXT NOT NULL,
    secure_version  INTEGER NOT NULL,
    filename        TEXT,
    notes           TEXT,
    uploaded_at     INTEGER NOT NULL
);

-- No foreign key to firmware: a finished rollout outlives the image it deployed.
CREATE TABLE rollouts (
    id          TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    firmware    TEXT NOT NULL,
    strategy    TEXT NOT NULL,
    reason      TEXT,
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER
);
CREATE INDEX rollouts_firmware ON rollouts (firmware);

-- `position` keeps the order in which targets were first stored (plan order).
CREATE TABLE targets (
    rollout      TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    device       TEXT NOT NULL,
    position     INTEGER NOT NULL,
    state        TEXT NOT NULL,
    phase        TEXT NOT NULL,
    bytes        INTEGER NOT NULL,
    total        INTEGER NOT NULL,
    error        TEXT,
    from_version TEXT,
    to_version   TEXT,
    attempts     INTEGER NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER,
    PRIMARY KEY (rollout, device)
);
CREATE INDEX targets_state ON targets (state);

-- Append-only; `hash` chains each record to the previous one (docs/reliability.md).
CREATE TABLE audit (
    seq          INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    rollout      TEXT,
    device       TEXT,
    firmware     TEXT,
    from_version TEXT,
    to_version   TEXT,
    outcome      TEXT,
    bytes        INTEGER,
    error        TEXT,
    started_at   INTEGER,
    ended_at     INTEGER,
    detail       TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE INDEX audit_device ON audit (device, seq);
CREATE INDEX audit_rollout ON audit (rollout, seq);
CREATE INDEX audit_at ON audit (at);
