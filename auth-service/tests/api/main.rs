//! Black-box tests of the auth service against real PostgreSQL and Redis.

mod helpers;

mod edge;
mod jwks;
mod login;
mod logout;
mod logs;
mod me;
mod openapi;
mod password;
mod refresh;
mod sessions;
mod signup;
