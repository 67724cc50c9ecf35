"""The run store's tables. Every write is keyed, so replaying it changes nothing."""

SCHEMA_VERSION = "1"
# Older schema version -> the SQL that brings a store to the next version (none yet: version 1 is the first).
MIGRATIONS: dict[int, str] = {}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    trial_key TEXT PRIMARY KEY,
    condition TEXT NOT NULL,
    latent INTEGER,
    strength REAL,
    prompt TEXT NOT NULL,
    seed INTEGER NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    extra TEXT NOT NULL DEFAULT '{}',
    claimed_by TEXT,
    claimed_at REAL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS generations (
    trial_key TEXT PRIMARY KEY REFERENCES trials(trial_key),
    text TEXT NOT NULL,
    token_ids TEXT,
    finish_reason TEXT,
    meta TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS grades (
    trial_key TEXT NOT NULL REFERENCES trials(trial_key),
    judge_id TEXT NOT NULL,
    rubric_version TEXT NOT NULL,
    attempts TEXT NOT NULL,
    error TEXT,
    raw TEXT,
    tries INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    PRIMARY KEY (trial_key, judge_id, rubric_version)
);
CREATE TABLE IF NOT EXISTS activations (
    trial_key TEXT NOT NULL REFERENCES trials(trial_key),
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    shape TEXT NOT NULL,
    dtype TEXT NOT NULL,
    PRIMARY KEY (trial_key, name)
);
CREATE INDEX IF NOT EXISTS trials_condition ON trials(condition);
"""
