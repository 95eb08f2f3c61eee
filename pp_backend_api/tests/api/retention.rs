//! Retention: one janitor round deletes every expired idempotency key, every demand published
//! longer ago than its retention, every expired session and every audit event older than its
//! retention, however many, and nothing else.

use std::time::Duration;

use diesel::RunQueryDsl;
use pp_backend_api::janitor::{PURGE_BATCH, Purged, RetentionConfig, purge_round};
use pp_storage::testkit::{TestDatabase, count};

#[test]
fn a_round_deletes_every_expired_row_whatever_the_backlog_and_keeps_the_rest() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let backlog = 2 * PURGE_BATCH + 17;
    diesel::sql_query(format!(
        "with work as (insert into works (work_code, add_up_to) values ('api-kept', 1) returning id) \
         insert into idempotency_keys (key, request, work_id, created_on, expires_on) \
         select 'key-' || i, 'add_up_to=1', work.id, now() - interval '2 days', \
                case when i <= {backlog} then now() - interval '1 day' else now() + interval '1 day' end \
         from work, generate_series(1, {backlog} + 5) as i"
    ))
    .execute(&mut conn)
    .expect("keys");
    diesel::sql_query(format!(
        "insert into demand_outbox (id, body, created_on, published_on) \
         select gen_random_uuid(), '{{\"add_up_to\":1,\"done\":false}}', now() - interval '3 days', \
                case when i <= {backlog} then now() - interval '2 days' \
                     when i <= {backlog} + 3 then now() - interval '1 minute' end \
         from generate_series(1, {backlog} + 6) as i"
    ))
    .execute(&mut conn)
    .expect("demands");
    diesel::sql_query(format!(
        "with account as (insert into accounts (name, role, password_hash) \
                          values ('ada', 'viewer', '$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA') \
                          returning id) \
         insert into sessions (token_hash, account_id, created_on, expires_on) \
         select sha256(i::text::bytea), account.id, now() - interval '2 days', \
                case when i <= {backlog} then now() - interval '1 second' else now() + interval '1 hour' end \
         from account, generate_series(1, {backlog} + 4) as i"
    ))
    .execute(&mut conn)
    .expect("sessions");
    diesel::sql_query(format!(
        "insert into audit_events (at, actor, action, outcome) \
         select case when i <= {backlog} then now() - interval '31 days' else now() - interval '29 days' end, \
                'account:ada', 'login', 'done' \
         from generate_series(1, {backlog} + 2) as i"
    ))
    .execute(&mut conn)
    .expect("audit events");
    let retention = RetentionConfig {
        outbox: Duration::from_secs(24 * 60 * 60),
        audit: Duration::from_secs(30 * 24 * 60 * 60),
        ..RetentionConfig::default()
    };

    let purged = purge_round(&db.pool(), &retention).expect("a round");

    let backlog = usize::try_from(backlog).expect("a count");
    assert_eq!(
        purged,
        Purged {
            idempotency_keys: backlog,
            published_demands: backlog,
            sessions: backlog,
            audit_events: backlog,
        }
    );
    assert_eq!(
        count(&mut conn, "select count(*) as n from sessions"),
        4,
        "live sessions are kept"
    );
    assert_eq!(
        count(&mut conn, "select count(*) as n from audit_events"),
        2,
        "recent events are kept"
    );
    assert_eq!(
        count(&mut conn, "select count(*) as n from idempotency_keys"),
        5,
        "live keys are kept"
    );
    assert_eq!(
        count(
            &mut conn,
            "select count(*) as n from demand_outbox where published_on is null"
        ),
        3,
        "unpublished demands are never deleted"
    );
    assert_eq!(
        count(
            &mut conn,
            "select count(*) as n from demand_outbox where published_on is not null"
        ),
        3,
        "recently published demands are kept"
    );
    assert_eq!(
        purge_round(&db.pool(), &retention).expect("a round"),
        Purged::default(),
        "nothing is left to delete"
    );
}
