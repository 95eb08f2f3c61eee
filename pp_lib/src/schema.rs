//! The Diesel view of the tables created by `pp_storage`'s migrations. Kept by hand, next to the
//! migrations it mirrors; the integration tests run every query against a migrated database, so a
//! column that drifts fails them.

diesel::table! {
    works (id) {
        id -> Int8,
        #[max_length = 50]
        work_code -> Varchar,
        add_up_to -> Int4,
        done -> Bool,
        result -> Nullable<Int8>,
        demand_id -> Nullable<Uuid>,
        created_on -> Timestamptz,
        updated_on -> Timestamptz,
    }
}

diesel::table! {
    events (id) {
        id -> Int8,
        work_id -> Int8,
        #[max_length = 50]
        work_code -> Varchar,
        #[max_length = 32]
        variable -> Varchar,
        value -> Text,
        created_on -> Timestamptz,
    }
}

diesel::joinable!(events -> works (work_id));

diesel::table! {
    demand_outbox (id) {
        id -> Uuid,
        body -> Jsonb,
        created_on -> Timestamptz,
        published_on -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    idempotency_keys (key) {
        #[max_length = 255]
        key -> Varchar,
        request -> Text,
        work_id -> Int8,
        created_on -> Timestamptz,
        expires_on -> Timestamptz,
    }
}

diesel::joinable!(idempotency_keys -> works (work_id));

diesel::table! {
    api_keys (id) {
        id -> Int8,
        name -> Text,
        token_hash -> Bytea,
        scopes -> Array<Text>,
        created_on -> Timestamptz,
        expires_on -> Nullable<Timestamptz>,
        revoked_on -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    accounts (id) {
        id -> Int8,
        name -> Text,
        role -> Text,
        password_hash -> Text,
        created_on -> Timestamptz,
        password_changed_on -> Timestamptz,
    }
}

diesel::table! {
    sessions (token_hash) {
        token_hash -> Bytea,
        account_id -> Int8,
        created_on -> Timestamptz,
        expires_on -> Timestamptz,
    }
}

diesel::joinable!(sessions -> accounts (account_id));

diesel::table! {
    audit_events (id) {
        id -> Int8,
        at -> Timestamptz,
        actor -> Text,
        action -> Text,
        object -> Text,
        source -> Text,
        outcome -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    works,
    events,
    demand_outbox,
    idempotency_keys,
    api_keys,
    accounts,
    sessions,
    audit_events
);
