-- Who may do what: API keys, dashboard accounts and their sessions, and the audit trail of what
-- they did. Names are short, printable and without spaces, so a log line or a table cell shows
-- them whole and no name can pass for another.

-- api_keys: a token is shown once, when it is made; only its SHA-256 is kept, so the table
-- holds nothing that authenticates. A key is never deleted, only revoked (its name and its use
-- stay in the audit trail's terms); an expired or revoked key authenticates no one.
create table api_keys (
    id bigserial primary key,
    name text not null unique
        constraint api_keys_name_is_a_name check (name ~ '^[A-Za-z0-9._@-]{1,64}$'),
    token_hash bytea not null unique
        constraint api_keys_token_hash_is_sha256 check (octet_length(token_hash) = 32),
    -- what it may do: read (GET), write (create works and demands), operate (the dashboard's
    -- actions); at least one.
    scopes text[] not null
        constraint api_keys_scopes_are_known
            check (scopes <@ array['read', 'write', 'operate'] and cardinality(scopes) > 0),
    created_on timestamptz not null default now(),
    expires_on timestamptz,
    revoked_on timestamptz,
    -- written by the API a batch at a time (at most once a minute per key), never per request.
    last_used_at timestamptz,
    constraint api_keys_expire_after_creation check (expires_on is null or expires_on > created_on)
);

-- accounts: the dashboard's people. The password is an Argon2id hash in PHC form (its
-- parameters and salt inside it), never the password.
create table accounts (
    id bigserial primary key,
    name text not null unique
        constraint accounts_name_is_a_name check (name ~ '^[A-Za-z0-9._@-]{1,64}$'),
    role text not null constraint accounts_role_is_known check (role in ('viewer', 'operator')),
    password_hash text not null constraint accounts_password_is_argon2id
        check (password_hash like '$argon2id$%'),
    created_on timestamptz not null default now(),
    password_changed_on timestamptz not null default now()
);

-- sessions: a logged-in browser. The cookie carries a random token; only its SHA-256 is kept
-- here, the one store every replica reads, so a session survives an API restart, works on every
-- replica, and dies everywhere at logout or when its account goes (cascade).
create table sessions (
    token_hash bytea primary key
        constraint sessions_token_hash_is_sha256 check (octet_length(token_hash) = 32),
    account_id bigint not null references accounts (id) on delete cascade,
    created_on timestamptz not null default now(),
    expires_on timestamptz not null,
    constraint sessions_expire_after_creation check (expires_on > created_on)
);

-- An account's sessions (logged out together when its password changes), and the purge.
create index sessions_account_id_idx on sessions (account_id);
create index sessions_expires_on_idx on sessions (expires_on);

-- audit_events: every change someone made and every failed login: who (an account, a key, the
-- admin token, the command line), what, on which object, from where, when, and how it ended.
-- Written in the transaction of the change where there is one; purged after a retention.
create table audit_events (
    id bigserial primary key,
    at timestamptz not null default now(),
    actor text not null,
    action text not null,
    object text not null default '',
    source text not null default '',
    outcome text not null constraint audit_events_outcome_is_known
        check (outcome in ('done', 'refused', 'failed'))
);

-- Reading the latest, and purging the oldest.
create index audit_events_at_idx on audit_events (at);
