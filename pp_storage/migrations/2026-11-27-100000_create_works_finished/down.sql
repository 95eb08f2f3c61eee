drop function pp_count_estimate(text);
drop index works_pending_other_idx;
drop function pp_record_finished(bigint);
drop table works_finished;
