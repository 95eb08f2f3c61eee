drop table audit_events;
drop table sessions;
drop table accounts;
drop table api_keys;
