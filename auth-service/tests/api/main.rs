//! Black-box tests of the auth service against real PostgreSQL and Redis.

mod helpers;

mod admin;
mod admin_records;
mod audit_chain;
mod cli;
mod edge;
mod housekeeping;
mod jwks;
mod limits;
mod lockout;
mod login;
mod logout;
mod logs;
mod mail_sink;
mod me;
mod mfa;
mod oauth;
mod oauth_revocation;
mod openapi;
mod passkeys;
mod password;
mod proxy;
mod races;
mod recovery;
mod refresh;
mod sessions;
mod signup;
mod slow;
