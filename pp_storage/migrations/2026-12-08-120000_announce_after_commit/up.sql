-- The writers announce their inserts themselves, after they commit, in a transaction of their
-- own (pp_lib::db::announce): a transaction that sends NOTIFY holds, through its commit, a lock
-- every notifying transaction shares, so a trigger that announced every insert made the inserts
-- commit one at a time (pgbench's one-insert transaction: 3,404-3,480 a second against
-- 8,858-10,151 without). The channels stay: pp_works_pending and pp_outbox.
drop trigger works_pending_announced on works;
drop function pp_announce_work_pending();
drop trigger demand_outbox_added on demand_outbox;
drop function pp_announce_outbox_added();
