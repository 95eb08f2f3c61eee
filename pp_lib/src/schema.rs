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

diesel::allow_tables_to_appear_in_same_query!(works, events, demand_outbox, idempotency_keys);
