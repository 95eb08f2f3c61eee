-- The consumer's transaction for ONE demand, with the statements it sends (a work inserted done,
-- skipped if its demand id is known; then its three events). The consumer sends the same two
-- statements for a whole batch of demands; this is the one-demand-per-transaction limit.
\set n random(1, 99)
begin;
insert into works (work_code, add_up_to, demand_id, done, result)
values ('consumer-' || substr(md5(random()::text), 1, 10), :n, gen_random_uuid(), true, :n * (:n + 1) / 2)
on conflict (demand_id) do nothing
returning id as work_id, work_code, add_up_to, done, created_on, updated_on, result, demand_id \gset
insert into events (work_id, work_code, variable, value, created_on)
values (:work_id, :work_code, 'compute/start', '', now()),
       (:work_id, :work_code, 'compute/stop', '', now()),
       (:work_id, :work_code, 'compute/result', :result, now())
returning id, work_code, variable, value, created_on, work_id;
commit;
