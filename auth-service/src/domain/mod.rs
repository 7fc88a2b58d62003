//! Values parsed from requests before anything touches the database.

mod display_name;
mod email;
mod password;

pub use display_name::DisplayName;
pub use email::Email;
pub use password::{NewPassword, PasswordInput};
