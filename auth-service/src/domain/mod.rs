//! Values parsed from requests before anything touches the database, and who sent them.

mod display_name;
mod email;
mod password;
mod request_meta;

pub use display_name::DisplayName;
pub use email::Email;
pub use password::{NewPassword, PasswordInput};
pub use request_meta::RequestMeta;
