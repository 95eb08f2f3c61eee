-- Every API process keeps the keys in memory. A change that matters to them (a key made,
-- revoked, expired, its scopes changed, or removed) is announced on the channel pp_api_keys, so
-- each process reads them again at once instead of at its next periodic reading. Noting a key's
-- last use is not announced: it changes nothing a request is judged by. The payload says what
-- happened to which key ('INSERT ci', 'UPDATE ci', 'DELETE ci'; names are no secret). NOTIFY is
-- sent when the changing transaction commits.
create function pp_announce_api_keys_changed() returns trigger
language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        perform pg_notify('pp_api_keys', tg_op || ' ' || old.name);
    else
        perform pg_notify('pp_api_keys', tg_op || ' ' || new.name);
    end if;
    return null;
end
$$;

create trigger api_keys_made_or_removed
    after insert or delete on api_keys
    for each row execute function pp_announce_api_keys_changed();

create trigger api_keys_changed
    after update on api_keys
    for each row
    when (old.revoked_on is distinct from new.revoked_on
          or old.expires_on is distinct from new.expires_on
          or old.scopes is distinct from new.scopes
          or old.token_hash is distinct from new.token_hash
          or old.name is distinct from new.name)
    execute function pp_announce_api_keys_changed();
