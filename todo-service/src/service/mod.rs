//! The todo use cases.
pub mod todos;
