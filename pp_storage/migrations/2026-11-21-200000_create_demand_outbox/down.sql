drop table demand_outbox;
