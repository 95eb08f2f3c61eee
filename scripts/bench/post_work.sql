insert into works (work_code, add_up_to) values ('api-' || substr(md5(random()::text), 1, 10), 4)
returning id, work_code, add_up_to, done, created_on, updated_on, result, demand_id;
