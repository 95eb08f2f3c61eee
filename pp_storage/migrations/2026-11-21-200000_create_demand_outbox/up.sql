-- demand_outbox: work demands accepted over HTTP (POST /work/demand), committed here first so an
-- accepted demand survives a broker outage or a crash. A relay publishes each row to RabbitMQ and
-- sets published_on only after the broker confirmed it.
create table demand_outbox (
    -- the future AMQP message_id: the consumer deduplicates on it, so publishing a row twice
    -- still makes one work.
    id uuid primary key,
    -- the message body, exactly as it will be published ({"add_up_to": n, "done": false}).
    body jsonb not null,
    created_on timestamptz not null default now(),
    -- null until the broker confirmed the publication.
    published_on timestamptz
);

-- The relay's scan: unpublished rows, oldest first. Partial, so it holds only the backlog.
create index demand_outbox_unpublished_idx on demand_outbox (created_on) where published_on is null;
