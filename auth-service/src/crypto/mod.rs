//! Passwords, signing keys and tokens. Every primitive comes from a well-kept crate.

pub mod hashing;
pub mod keyring;
pub mod keys;
pub mod tokens;
