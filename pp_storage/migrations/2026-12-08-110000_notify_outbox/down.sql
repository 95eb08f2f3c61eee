drop trigger demand_outbox_added on demand_outbox;
drop function pp_announce_outbox_added();
