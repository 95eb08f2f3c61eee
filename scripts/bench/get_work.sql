\set id random(1, :rows)
select id, work_code, add_up_to, done, created_on, updated_on, result, demand_id from works where id = :id;
