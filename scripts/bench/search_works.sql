-- GET /work/search as a literal statement, the planner's best case: pgbench -M simple pastes
-- the variables into the text, so PostgreSQL plans every execution with the values in hand.
select id, work_code, add_up_to, done, created_on, updated_on, result, demand_id
from works
where work_code like ':pattern' and created_on >= ':since' and done = any('{f,t}')
order by id limit :limit;
