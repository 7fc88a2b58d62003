//! A real SMTP server for a test: aiosmtpd (Debian's `python3-aiosmtpd`, which
//! `deploy/dev` installs) writing what it receives to a maildir of the test's own. Tests
//! read mail from there, as a user would from their mailbox, never from the database.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mail_parser::MessageParser;

use crate::helpers::{TestApp, spawn_app_with};

pub struct MailSink {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// One received mail.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The envelope recipient.
    pub to: String,
    pub from: String,
    pub subject: String,
    /// The text part.
    pub body: String,
    /// The HTML part (empty when there is none).
    pub html: String,
    /// The top-level content type.
    pub content_type: String,
}

impl Mail {
    /// The token of the link `<app>/#<fragment>=<token>` in the body.
    pub fn token(&self, fragment: &str) -> String {
        let marker = format!("#{fragment}=");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {marker} link in: {}", self.body))
            + marker.len();
        self.body[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl MailSink {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// On a given port (one the service was told about before the sink was up).
    pub async fn start_on(port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("mailsink-{}", uuid::Uuid::new_v4()));
        let python =
            std::env::var("TEST_SMTP_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{python} -m aiosmtpd: {e} (install python3-aiosmtpd; deploy/dev does)")
            });
        let sink = Self {
            port,
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the SMTP sink did not start (is python3-aiosmtpd installed?)"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        sink
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every mail received so far, oldest first.
    pub fn all(&self) -> Vec<Mail> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("new")) else {
            return Vec::new();
        };
        let mut files: Vec<_> = entries.filter_map(Result::ok).collect();
        files.sort_by_key(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
        });
        files
            .into_iter()
            .filter_map(|e| std::fs::read(e.path()).ok())
            .map(|raw| {
                let msg = MessageParser::default()
                    .parse(&raw[..])
                    .expect("a parsable mail");
                let header = |name: &str| {
                    msg.header_raw(name)
                        .map(|v| v.trim().to_owned())
                        .unwrap_or_default()
                };
                Mail {
                    to: header("X-RcptTo"),
                    from: header("From"),
                    subject: msg.subject().unwrap_or_default().to_owned(),
                    body: msg.body_text(0).map(|b| b.into_owned()).unwrap_or_default(),
                    html: msg
                        .html_part(0)
                        .and_then(|p| p.text_contents())
                        .map(str::to_owned)
                        .unwrap_or_default(),
                    content_type: header("Content-Type"),
                }
            })
            .collect()
    }

    /// The mails to `to`, oldest first.
    pub fn to(&self, to: &str) -> Vec<Mail> {
        self.all()
            .into_iter()
            .filter(|m| m.to.eq_ignore_ascii_case(to))
            .collect()
    }

    /// Wait (up to 15 s) until `to` has received `n` mails; returns them, oldest first.
    pub async fn wait_for(&self, to: &str, n: usize) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mails = self.to(to);
            if mails.len() >= n {
                return mails;
            }
            assert!(
                Instant::now() < deadline,
                "{to} got {} mails of {n}: {mails:#?}",
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `n`th mail (1-based) to `to` with a subject containing `subject`.
    pub async fn wait_for_subject(&self, to: &str, subject: &str, n: usize) -> Mail {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mails: Vec<Mail> = self
                .to(to)
                .into_iter()
                .filter(|m| m.subject.contains(subject))
                .collect();
            if mails.len() >= n {
                return mails[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no mail {n} '{subject}' to {to}; got {:#?}",
                self.to(to)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MailSink {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub const APP_URL: &str = "https://app.example.com";

/// The service with mail going to a sink of the test's own.
pub async fn spawn_app_with_mail(
    configure: impl FnOnce(&mut auth_service::config::Settings),
) -> (TestApp, MailSink) {
    let sink = MailSink::start().await;
    let url = sink.url();
    let app = spawn_app_with(|s| {
        s.auth.smtp_url = secrecy::SecretString::from(url);
        s.auth.public_app_url = APP_URL.into();
        s.auth.mail_from = "Auth tests <auth@example.com>".into();
        configure(s);
    })
    .await;
    (app, sink)
}
