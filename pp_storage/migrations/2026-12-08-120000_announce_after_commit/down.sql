-- The triggers that announced every insert, as they were.
create function pp_announce_work_pending() returns trigger
language plpgsql as $$
begin
    perform pg_notify('pp_works_pending', '');
    return null;
end
$$;

create trigger works_pending_announced
    after insert on works
    for each row
    when (not new.done and new.demand_id is null)
    execute function pp_announce_work_pending();

create function pp_announce_outbox_added() returns trigger
language plpgsql as $$
begin
    perform pg_notify('pp_outbox', '');
    return null;
end
$$;

create trigger demand_outbox_added
    after insert on demand_outbox
    for each statement
    execute function pp_announce_outbox_added();
