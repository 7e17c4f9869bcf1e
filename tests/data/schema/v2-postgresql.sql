-- The schema version 2 stores were made with (common/store_pg.c at 6f8e39f),
-- for the upgrade tests (tests/unit/test_store.c).
CREATE TABLE schema_version ( version BIGINT NOT NULL);
CREATE TABLE tokens ( serial TEXT PRIMARY KEY, kind TEXT, secret BYTEA NOT NULL, algorithm BIGINT, digits BIGINT, period BIGINT, last_step BIGINT NOT NULL DEFAULT -1, drift BIGINT NOT NULL DEFAULT 0, disabled BIGINT NOT NULL DEFAULT 0, created BIGINT);
CREATE TABLE contracts ( id TEXT PRIMARY KEY, pwhash TEXT NOT NULL, login BIGINT NOT NULL, serial TEXT UNIQUE REFERENCES tokens(serial), card BYTEA, failures BIGINT NOT NULL DEFAULT 0, locked_until BIGINT NOT NULL DEFAULT 0, closed BIGINT NOT NULL DEFAULT 0, created BIGINT);
CREATE TABLE audit ( id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ts BIGINT, action TEXT, contract TEXT, serial TEXT, context TEXT, verdict TEXT, reason BIGINT, detail TEXT, seq BIGINT, mac BYTEA, keyed BIGINT);
CREATE INDEX audit_contract_ts ON audit(contract, ts);
CREATE INDEX audit_ts ON audit(ts);
CREATE UNIQUE INDEX audit_seq ON audit(seq);
CREATE INDEX audit_pending ON audit(id) WHERE seq IS NULL AND keyed = 0;
CREATE TABLE audit_head ( k BIGINT PRIMARY KEY CHECK (k = 1), seq BIGINT NOT NULL, mac BYTEA, tag BYTEA, pending BIGINT NOT NULL, base_seq BIGINT NOT NULL, base_mac BYTEA, base_tag BYTEA);
INSERT INTO audit_head VALUES (1, 0, NULL, NULL, 0, 0, NULL, NULL);
CREATE TABLE used_states ( id BYTEA PRIMARY KEY, expires BIGINT);
CREATE INDEX used_states_expires ON used_states(expires);
INSERT INTO schema_version(version) VALUES (2);
