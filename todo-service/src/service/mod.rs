//! The todo use cases.
pub mod events;
pub mod todos;
