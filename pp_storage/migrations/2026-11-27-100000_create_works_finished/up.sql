-- What the dashboard and GET /stats read without counting every row: how many works were
-- finished in each second of the last hour, a partial index for the pending works no other index
-- holds, and PostgreSQL's own estimate of a query's rows for when a count would be too long.

-- works_finished: a ring of one row per second of the hour (and per slot, below), so the table
-- never grows: the throughput of the last 15 minutes (the dashboard's chart) and of the last hour
-- (done_last_hour on a large table) are sums over at most 3,600 x 8 small rows, however many
-- millions of works are done. Counting the done works of a window on each refresh would read
-- every one of them instead.
--
-- The commits that finish works add to it (pp_record_finished below, called by the consumer's
-- record_demands and the sweeper, in their transaction, so a rolled-back batch counts nothing):
--
-- * slot: concurrent writers in the same second would queue on one row's lock until each commits;
--   each transaction writes to one of 8 slots, by its transaction id, so they rarely meet, and
--   readers add the slots up. By its id and not at random: a transaction that records twice
--   (complete_work called for several works in one transaction) writes the same row again,
--   so it never holds two ring rows that another transaction could take in the other order (a
--   deadlock);
-- * second: which second (epoch seconds, the database's clock, the transaction's start as for
--   works.updated_on) the count belongs to; a writer that finds an older second in its row (an
--   hour ago or more) starts the row again from its own count, so no purge is needed;
-- * fillfactor 50: every write is an update of a column no index holds, so PostgreSQL can keep
--   the new row version on the same page (a HOT update) and the table stays its size.
create table works_finished (
    second_of_hour smallint not null,
    slot smallint not null,
    second bigint not null default 0,
    finished bigint not null default 0,
    constraint works_finished_pkey primary key (second_of_hour, slot),
    constraint works_finished_second_of_hour_in_range check (second_of_hour between 0 and 3599),
    constraint works_finished_slot_in_range check (slot between 0 and 7),
    constraint works_finished_not_negative check (finished >= 0)
) with (fillfactor = 50);

-- Every row exists from the start: writers only ever update, and never race to insert.
insert into works_finished (second_of_hour, slot)
select second_of_hour, slot
from generate_series(0, 3599) as second_of_hour, generate_series(0, 7) as slot;

-- Adds `finished` works to the current second's count, in the caller's transaction. One
-- statement; the slot is computed once (a subquery in from, not a condition per row). A
-- transaction older than the row's second (it began an hour or more before the row was last
-- written) changes nothing: its second is out of the ring.
create function pp_record_finished(n bigint) returns void
language sql as $$
    update works_finished as ring
       set finished = case when ring.second = now_.second then ring.finished + $1 else $1 end,
           second = now_.second
      from (select floor(extract(epoch from now()))::bigint as second,
                   (txid_current() % 8)::smallint as slot) as now_
     where $1 > 0
       and ring.second_of_hour = now_.second % 3600
       and ring.slot = now_.slot
       and ring.second <= now_.second
$$;

-- Pending works that no other index holds: works_pending_api_idx covers the pending works
-- created over HTTP; this one the others (a demand's work is inserted done, so it stays empty).
-- Together they count every pending work exactly from the index alone. An insert whose row is
-- outside the predicate (all of them today) pays only for checking it.
create index works_pending_other_idx on works (created_on) where not done and demand_id is not null;

-- PostgreSQL's estimate of how many rows `query` returns (the planner's, from the table's
-- statistics scaled to its current size), for counts too large to make on every refresh. Plans
-- the query, never runs it.
create function pp_count_estimate(query text) returns bigint
language plpgsql as $$
declare
    plan jsonb;
begin
    execute 'explain (format json) ' || query into plan;
    return (plan -> 0 -> 'Plan' ->> 'Plan Rows')::bigint;
end;
$$;
