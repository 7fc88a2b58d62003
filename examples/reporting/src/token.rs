//! Client-credentials tokens, fetched with the `oauth2` crate and kept until shortly before
//! they expire.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, EndpointNotSet, EndpointSet, TokenResponse, TokenUrl};
use tokio::sync::Mutex;

/// A token is used until this long before it expires, then replaced.
const EARLY: Duration = Duration::from_secs(30);

type Client =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

pub struct TokenSource {
    oauth: Client,
    /// For `/oauth/revoke`, which the `oauth2` crate reaches only over https.
    revoke_url: String,
    id: String,
    secret: String,
    http: oauth2::reqwest::Client,
    cached: Mutex<Option<(String, Instant)>>,
    fetched: AtomicUsize,
}

impl TokenSource {
    pub fn new(auth_url: &str, id: String, secret: String) -> anyhow::Result<Self> {
        let base = auth_url.trim_end_matches('/');
        let oauth = BasicClient::new(ClientId::new(id.clone()))
            .set_client_secret(ClientSecret::new(secret.clone()))
            .set_token_uri(TokenUrl::new(format!("{base}/oauth/token"))?);
        let http = oauth2::reqwest::Client::builder()
            // RFC 6749 section 5.1 forbids following redirects at the token endpoint.
            .redirect(oauth2::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            oauth,
            revoke_url: format!("{base}/oauth/revoke"),
            id,
            secret,
            http,
            cached: Mutex::new(None),
            fetched: AtomicUsize::new(0),
        })
    }

    /// A token that is good for a while yet: the cached one, or a new one.
    pub async fn token(&self) -> anyhow::Result<String> {
        let mut cached = self.cached.lock().await;
        if let Some((token, good_until)) = cached.as_ref()
            && Instant::now() < *good_until
        {
            return Ok(token.clone());
        }
        let response = self
            .oauth
            .exchange_client_credentials()
            .request_async(&self.http)
            .await
            .context("fetching a client-credentials token")?;
        self.fetched.fetch_add(1, Ordering::Relaxed);
        let lifetime = response.expires_in().unwrap_or(Duration::from_secs(60));
        let token = response.access_token().secret().clone();
        *cached = Some((
            token.clone(),
            Instant::now() + lifetime.saturating_sub(EARLY),
        ));
        Ok(token)
    }

    /// Drop `token` if it is the cached one (the resource server refused it).
    pub async fn forget(&self, token: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|(t, _)| t == token) {
            *cached = None;
        }
    }

    /// Revoke the cached token at the auth service (RFC 7009): what an operator would do.
    pub async fn revoke_cached(&self) -> anyhow::Result<bool> {
        let Some((token, _)) = self.cached.lock().await.clone() else {
            return Ok(false);
        };
        let resp = self
            .http
            .post(&self.revoke_url)
            .basic_auth(&self.id, Some(&self.secret))
            .form(&[
                ("token", token.as_str()),
                ("token_type_hint", "access_token"),
            ])
            .send()
            .await
            .context("revoking the token")?;
        anyhow::ensure!(
            resp.status().is_success(),
            "revocation answered {}",
            resp.status()
        );
        Ok(true)
    }

    /// How many tokens were fetched so far.
    pub fn fetched(&self) -> usize {
        self.fetched.load(Ordering::Relaxed)
    }
}
