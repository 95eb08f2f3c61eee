-- Retention of the outbox: published demands are deleted once older than the retention
-- (PP_OUTBOX_RETENTION), oldest first, in batches. Partial, so it holds only published rows
-- and the relay's inserts and updates of unpublished rows never touch it.
create index demand_outbox_published_idx on demand_outbox (published_on) where published_on is not null;
