-- A work created pending without a demand (over HTTP: `POST /work`) is the sweeper's to finish.
-- Its insert is announced on the channel pp_works_pending, so a listening sweeper runs at once
-- instead of at its next tick (the tick stays, for a notification missed). NOTIFY is sent when
-- the inserting transaction commits, and PostgreSQL folds the same notification sent twice in
-- one transaction into one: a batch of inserts announces itself once. The consumer's inserts
-- (done works, with their demand) never call the function.
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
