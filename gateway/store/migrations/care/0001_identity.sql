-- 0001 identity: the people biogw serves and the devices bound to them.
-- Identifiable data lives only here (and in consent/audit references by subject id);
-- everything downstream of the gateway uses the opaque device key or a pseudonym.
-- The MAC address and serial number never leave this schema.

CREATE SCHEMA identity;
REVOKE ALL ON SCHEMA identity FROM PUBLIC;

CREATE TABLE identity.subjects (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 500),
    birth_date  date,
    email       text CHECK (email IS NULL OR email LIKE '%_@_%'),
    phone       text CHECK (phone IS NULL OR phone ~ '^\+?[0-9 ()-]{3,32}$'),
    country     char(2) CHECK (country IS NULL OR country ~ '^[A-Z]{2}$'),
    height_cm   numeric(5, 1) CHECK (height_cm IS NULL OR height_cm BETWEEN 30 AND 300),
    weight_kg   numeric(5, 1) CHECK (weight_kg IS NULL OR weight_kg BETWEEN 1 AND 700),
    sex         text CHECK (sex IS NULL OR sex IN ('female', 'male', 'other', 'unknown')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN identity.subjects.country IS 'ISO 3166-1 alpha-2';

CREATE TABLE identity.devices (
    device_key        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    mac               macaddr NOT NULL,
    serial            text CHECK (serial IS NULL OR length(serial) BETWEEN 1 AND 128),
    model             text,
    profile           text NOT NULL,
    owner_subject_id  uuid REFERENCES identity.subjects (id),
    bond_state        text NOT NULL DEFAULT 'unbonded'
                      CHECK (bond_state IN ('unbonded', 'bonding', 'bonded', 'removed')),
    paired_at         timestamptz,
    unpaired_at       timestamptz,
    CHECK (unpaired_at IS NULL OR paired_at IS NULL OR unpaired_at >= paired_at)
);
COMMENT ON COLUMN identity.devices.device_key IS
    'opaque random key used everywhere downstream instead of MAC or serial';
COMMENT ON COLUMN identity.devices.profile IS 'device profile name (devices registry)';

-- One live binding per radio address: a device row that is not removed owns its MAC.
CREATE UNIQUE INDEX devices_live_mac ON identity.devices (mac) WHERE bond_state <> 'removed';
CREATE INDEX devices_owner ON identity.devices (owner_subject_id);
