-- The schema version 2 stores were made with (common/store_sqlite.c at 6f8e39f),
-- for the upgrade tests (tests/unit/test_store.c).
CREATE TABLE schema_version ( version INTEGER NOT NULL) STRICT;
CREATE TABLE tokens ( serial TEXT PRIMARY KEY, kind TEXT, secret BLOB NOT NULL, algorithm INTEGER, digits INTEGER, period INTEGER, last_step INTEGER NOT NULL DEFAULT -1, drift INTEGER NOT NULL DEFAULT 0, disabled INTEGER NOT NULL DEFAULT 0, created INTEGER) STRICT;
CREATE TABLE contracts ( id TEXT PRIMARY KEY, pwhash TEXT NOT NULL, login INTEGER NOT NULL, serial TEXT UNIQUE REFERENCES tokens(serial), card BLOB, failures INTEGER NOT NULL DEFAULT 0, locked_until INTEGER NOT NULL DEFAULT 0, closed INTEGER NOT NULL DEFAULT 0, created INTEGER) STRICT;
CREATE TABLE audit ( id INTEGER PRIMARY KEY, ts INTEGER, action TEXT, contract TEXT, serial TEXT, context TEXT, verdict TEXT, reason INTEGER, detail TEXT, seq INTEGER, mac BLOB, keyed INTEGER) STRICT;
CREATE INDEX audit_contract_ts ON audit(contract, ts);
CREATE INDEX audit_ts ON audit(ts);
CREATE UNIQUE INDEX audit_seq ON audit(seq);
CREATE INDEX audit_pending ON audit(id) WHERE seq IS NULL AND keyed = 0;
CREATE TABLE audit_head ( k INTEGER PRIMARY KEY CHECK (k = 1), seq INTEGER NOT NULL, mac BLOB, tag BLOB, pending INTEGER NOT NULL, base_seq INTEGER NOT NULL, base_mac BLOB, base_tag BLOB) STRICT;
INSERT INTO audit_head VALUES (1, 0, NULL, NULL, 0, 0, NULL, NULL);
CREATE TABLE used_states ( id BLOB PRIMARY KEY, expires INTEGER) STRICT;
CREATE INDEX used_states_expires ON used_states(expires);
INSERT INTO schema_version(version) VALUES (2);
