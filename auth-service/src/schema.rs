//! Diesel's view of `migrations/auth` (kept by hand; the migrations are the source of truth).

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        password_hash -> Text,
        display_name -> Nullable<Text>,
        role -> Text,
        disabled -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        auth_epoch -> Int8,
        email_verified_at -> Nullable<Timestamptz>,
        mfa_enabled -> Bool,
    }
}

diesel::table! {
    mfa_totp (user_id) {
        user_id -> Uuid,
        secret -> Bytea,
        confirmed_at -> Nullable<Timestamptz>,
        last_step -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    mfa_recovery_codes (code_hash) {
        code_hash -> Bytea,
        user_id -> Uuid,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    mfa_challenges (token_hash) {
        token_hash -> Bytea,
        user_id -> Uuid,
        auth_epoch -> Int8,
        role -> Text,
        refresh_delivery -> Text,
        attempts -> Int4,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    mail_outbox (id) {
        id -> Int8,
        kind -> Text,
        user_id -> Nullable<Uuid>,
        recipient -> Text,
        payload -> Jsonb,
        auth_epoch -> Nullable<Int8>,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    email_tokens (token_hash) {
        token_hash -> Bytea,
        purpose -> Text,
        user_id -> Uuid,
        email -> Text,
        auth_epoch -> Nullable<Int8>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
        refresh_delivery -> Text,
        amr -> Text,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Uuid,
        session_id -> Uuid,
        parent_id -> Nullable<Uuid>,
        token_hash -> Bytea,
        issued_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        alg -> Text,
        private_key -> Bytea,
        public_jwk -> Jsonb,
        activates_at -> Timestamptz,
        retired_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Int8,
        occurred_at -> Timestamptz,
        event -> Text,
        actor_id -> Nullable<Uuid>,
        subject_id -> Nullable<Uuid>,
        session_id -> Nullable<Uuid>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        request_id -> Nullable<Text>,
        details -> Jsonb,
        created_at -> Timestamptz,
        prev_hash -> Nullable<Bytea>,
        hash -> Nullable<Bytea>,
    }
}

diesel::table! {
    audit_head (id) {
        id -> Bool,
        prev -> Nullable<Bytea>,
        hash -> Nullable<Bytea>,
    }
}

diesel::table! {
    audit_pending (id) {
        id -> Int8,
        occurred_at -> Timestamptz,
        event -> Text,
        actor_id -> Nullable<Uuid>,
        subject_id -> Nullable<Uuid>,
        session_id -> Nullable<Uuid>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        request_id -> Nullable<Text>,
        details -> Jsonb,
        content -> Bytea,
    }
}

diesel::table! {
    audit_seals (audit_id) {
        audit_id -> Int8,
        mac -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    oauth_clients (id) {
        id -> Uuid,
        name -> Text,
        scopes -> Array<Text>,
        secret_hash -> Bytea,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    outbox_events (id) {
        id -> Int8,
        kind -> Text,
        payload -> Jsonb,
        published_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    revocations (id) {
        id -> Int8,
        kind -> Text,
        value -> Text,
        revoked_at -> Timestamptz,
        expires_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    mfa_failures (user_id) {
        user_id -> Uuid,
        failed_codes -> Int4,
        failures_since -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    passkeys (id) {
        id -> Uuid,
        user_id -> Uuid,
        credential_id -> Bytea,
        name -> Text,
        credential -> Text,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webauthn_challenges (id) {
        id -> Uuid,
        purpose -> Text,
        user_id -> Nullable<Uuid>,
        auth_epoch -> Nullable<Int8>,
        mfa_token_hash -> Nullable<Bytea>,
        refresh_delivery -> Text,
        state -> Text,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(email_tokens -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(audit_seals -> audit_log (audit_id));
diesel::allow_tables_to_appear_in_same_query!(audit_log, audit_seals);
diesel::allow_tables_to_appear_in_same_query!(users, sessions, refresh_tokens, revocations);
diesel::allow_tables_to_appear_in_same_query!(users, email_tokens, mail_outbox);
