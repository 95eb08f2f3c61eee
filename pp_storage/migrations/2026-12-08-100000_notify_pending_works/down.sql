drop trigger works_pending_announced on works;
drop function pp_announce_work_pending();
