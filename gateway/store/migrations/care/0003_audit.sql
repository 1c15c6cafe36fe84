-- 0003 audit: an append-only, hash-chained access log.
--
-- Each row's hash is sha256 over a canonical encoding of the row including the previous
-- row's hash; gateway.store.audit re-derives it in Python to verify the chain, so the
-- encoding below is a contract: every field is written as
--     <octet length of its UTF-8 text> ':' <text> ';'
-- in the order seq, at, actor_role, action, object, details, prev_hash, where ``at`` is
-- UTC as YYYY-MM-DDTHH:MM:SS.ffffffZ, ``details`` is jsonb's canonical text output and
-- ``prev_hash`` is lower-case hex (64 zeros before the first row).
--
-- Appends are serialised by a row lock on the single audit.chain_head row, which the
-- BEFORE INSERT trigger advances; seq, at, prev_hash and hash are always assigned by the
-- trigger, never by the caller. Application roles append through audit.append() only.

CREATE SCHEMA audit;
REVOKE ALL ON SCHEMA audit FROM PUBLIC;

CREATE TABLE audit.log (
    seq         bigint PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor_role  text NOT NULL CHECK (length(actor_role) BETWEEN 1 AND 200),
    action      text NOT NULL CHECK (length(action) BETWEEN 1 AND 200),
    object      text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    prev_hash   bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash        bytea NOT NULL CHECK (octet_length(hash) = 32)
);

CREATE TABLE audit.chain_head (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_seq    bigint NOT NULL,
    last_hash   bytea NOT NULL CHECK (octet_length(last_hash) = 32)
);
INSERT INTO audit.chain_head (singleton, last_seq, last_hash)
VALUES (true, 0, '\x0000000000000000000000000000000000000000000000000000000000000000');

CREATE FUNCTION audit.canonical_field(value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog
RETURN octet_length(value)::text || ':' || value || ';';

CREATE FUNCTION audit.row_hash(
    seq bigint, at timestamptz, actor_role text, action text, object text,
    details jsonb, prev_hash bytea
) RETURNS bytea
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog
RETURN sha256(convert_to(
    audit.canonical_field(seq::text)
    || audit.canonical_field(to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
    || audit.canonical_field(actor_role)
    || audit.canonical_field(action)
    || audit.canonical_field(object)
    || audit.canonical_field(details::text)
    || audit.canonical_field(encode(prev_hash, 'hex')),
    'UTF8'));

-- Runs as the schema owner so that application roles need no privilege on chain_head.
CREATE FUNCTION audit.link_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog
AS $$
DECLARE
    head audit.chain_head%ROWTYPE;
BEGIN
    SELECT * INTO STRICT head FROM audit.chain_head WHERE singleton FOR UPDATE;
    NEW.seq := head.last_seq + 1;
    NEW.at := clock_timestamp();
    NEW.prev_hash := head.last_hash;
    NEW.hash := audit.row_hash(
        NEW.seq, NEW.at, NEW.actor_role, NEW.action, NEW.object, NEW.details, NEW.prev_hash);
    UPDATE audit.chain_head SET last_seq = NEW.seq, last_hash = NEW.hash WHERE singleton;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION audit.link_row() FROM PUBLIC;

CREATE TRIGGER log_link BEFORE INSERT ON audit.log
    FOR EACH ROW EXECUTE FUNCTION audit.link_row();
CREATE TRIGGER log_append_only BEFORE UPDATE OR DELETE ON audit.log
    FOR EACH ROW EXECUTE FUNCTION public.biogw_reject_change();
CREATE TRIGGER log_no_truncate BEFORE TRUNCATE ON audit.log
    FOR EACH STATEMENT EXECUTE FUNCTION public.biogw_reject_change();

-- The one way application roles write audit records.
CREATE FUNCTION audit.append(actor_role text, action text, object text, details jsonb)
RETURNS TABLE (seq bigint, hash bytea)
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog
BEGIN ATOMIC
    INSERT INTO audit.log (seq, at, actor_role, action, object, details, prev_hash, hash)
    VALUES (0, now(), append.actor_role, append.action, append.object,
            coalesce(append.details, '{}'::jsonb),
            '\x0000000000000000000000000000000000000000000000000000000000000000',
            '\x0000000000000000000000000000000000000000000000000000000000000000')
    RETURNING log.seq, log.hash;
END;
REVOKE ALL ON FUNCTION audit.append(text, text, text, jsonb) FROM PUBLIC;
