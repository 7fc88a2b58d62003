//! Diesel's view of `migrations/todo` (kept by hand; the migrations are the source of truth).

diesel::table! {
    todos (id) {
        id -> Uuid,
        owner_id -> Text,
        title -> Text,
        description -> Nullable<Text>,
        done -> Bool,
        due_at -> Nullable<Timestamptz>,
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    todo_counts (owner_id) {
        owner_id -> Text,
        n -> Int8,
    }
}

diesel::table! {
    idempotency_keys (owner_id, key) {
        owner_id -> Text,
        key -> Text,
        request_hash -> Bytea,
        response_status -> Int4,
        response_body -> Jsonb,
        location -> Nullable<Text>,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}
