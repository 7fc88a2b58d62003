//! One page of a list, as every list route answers: `{"items": [...], "next_cursor": ...}`.

use poem_openapi::Object;
use poem_openapi::types::{ParseFromJSON, ToJSON};

/// A page of a list, oldest or newest first as the route says.
#[derive(Debug, Object)]
pub struct Page<T: ParseFromJSON + ToJSON> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

impl<T: ParseFromJSON + ToJSON> Page<T> {
    /// From rows and the next cursor (`shared::cursor::split_page`), each row made an item.
    pub fn of<R>(rows: Vec<R>, next_cursor: Option<String>, item: impl FnMut(R) -> T) -> Self {
        Self {
            items: rows.into_iter().map(item).collect(),
            next_cursor,
        }
    }
}
