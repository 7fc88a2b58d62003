//! Values parsed from requests before anything touches the database, and who sent them.

mod display_name;
mod email;
mod oauth_error;
mod password;
mod request_meta;

pub use display_name::DisplayName;
pub use email::Email;
pub use oauth_error::{OAuthCode, OAuthError};
pub use password::{NewPassword, PasswordInput};
pub use request_meta::RequestMeta;
