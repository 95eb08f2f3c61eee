-- A demand accepted over HTTP (POST /work/demand) is committed to demand_outbox first; every
-- API process relaying the outbox should publish it at once, not only the one that took the
-- request (whose handler wakes its own relay). Each insert statement is announced on the
-- channel pp_outbox when its transaction commits (once per transaction: PostgreSQL folds the
-- same notification sent twice), and the relays listening run a round at once; their interval
-- stays, for an announcement missed.
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
