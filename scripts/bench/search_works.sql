-- The statement the API runs for GET /work/search?work_code=api- (Diesel's SQL, same parameters:
-- pgbench passes the variables as bound parameters, so PostgreSQL plans it as it plans ours).
select works.id, works.work_code, works.add_up_to, works.done, works.created_on, works.updated_on,
       works.result, works.demand_id
from works
where works.work_code like :prefix escape '\' and works.created_on >= :since
  and works.created_on < :until and works.done = any(:done) and works.id > :after_id
order by works.id asc limit :limit;
