//! The report: every owner's todos, read a page at a time through the generated client.

use std::fmt;
use std::num::NonZeroU32;

use anyhow::Context;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use crate::todo_api;
use crate::token::TokenSource;

/// What the report says.
pub struct Summary {
    pub todos: usize,
    pub done: usize,
    pub pages: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} todos, {} done (read in {} pages)",
            self.todos, self.done, self.pages
        )
    }
}

pub struct Reporter {
    todo_url: String,
    tokens: TokenSource,
}

impl Reporter {
    pub fn new(todo_url: &str, tokens: TokenSource) -> Self {
        Self {
            todo_url: todo_url.trim_end_matches('/').to_owned(),
            tokens,
        }
    }

    /// The generated client, sending `token`.
    fn client(&self, token: &str) -> anyhow::Result<todo_api::Client> {
        let mut headers = HeaderMap::new();
        let mut bearer = HeaderValue::from_str(&format!("Bearer {token}"))?;
        bearer.set_sensitive(true);
        headers.insert(AUTHORIZATION, bearer);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(todo_api::Client::new_with_client(&self.todo_url, http))
    }

    /// One page, with a token that is good; a token the service refuses (expired, or
    /// revoked meanwhile) is replaced once.
    async fn page(&self, cursor: Option<&str>) -> anyhow::Result<todo_api::types::PageTodo> {
        let mut retried = false;
        loop {
            let token = self.tokens.token().await?;
            let client = self.client(&token)?;
            let mut request = client
                .admin_list_todos()
                .limit(NonZeroU32::new(100).context("a page size")?);
            if let Some(cursor) = cursor {
                request = request.cursor(cursor.to_owned());
            }
            match request.send().await {
                Ok(page) => return Ok(page.into_inner()),
                Err(progenitor_client::Error::ErrorResponse(resp))
                    if resp.status() == StatusCode::UNAUTHORIZED && !retried =>
                {
                    self.tokens.forget(&token).await;
                    retried = true;
                }
                Err(progenitor_client::Error::UnexpectedResponse(resp))
                    if resp.status() == StatusCode::UNAUTHORIZED && !retried =>
                {
                    self.tokens.forget(&token).await;
                    retried = true;
                }
                Err(err) => return Err(anyhow::anyhow!("listing todos: {err}")),
            }
        }
    }

    /// Read every todo, page by page.
    pub async fn report(&self) -> anyhow::Result<Summary> {
        let mut summary = Summary {
            todos: 0,
            done: 0,
            pages: 0,
        };
        let mut cursor: Option<String> = None;
        loop {
            let page = self.page(cursor.as_deref()).await?;
            summary.pages += 1;
            summary.todos += page.items.len();
            summary.done += page.items.iter().filter(|t| t.done).count();
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        Ok(summary)
    }

    /// Revoke the token in use (for `--show-recovery`), and give the TODO service the second
    /// the contract allows to hear of it.
    pub async fn revoke_current_token(&self) -> anyhow::Result<bool> {
        let revoked = self.tokens.revoke_cached().await?;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        Ok(revoked)
    }

    pub fn tokens_fetched(&self) -> usize {
        self.tokens.fetched()
    }
}
