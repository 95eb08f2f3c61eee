-- idempotency_keys: the Idempotency-Key header of POST /work. A retry with the same key and the
-- same request gets the work the first request created; the same key with another request is
-- refused. Keys expire (24 h by default) and may then be used again.
create table idempotency_keys (
    key varchar(255) primary key,
    -- what was asked, in a canonical form (e.g. "add_up_to=4", or "add_up_to=random"), so a
    -- retry matches whatever whitespace or field order its body has.
    request text not null,
    -- the work the first request created; the key goes with it.
    work_id bigint not null references works (id) on delete cascade,
    created_on timestamptz not null default now(),
    expires_on timestamptz not null,
    constraint idempotency_keys_expire_after_creation check (expires_on > created_on)
);

-- Purging expired keys.
create index idempotency_keys_expires_on_idx on idempotency_keys (expires_on);
