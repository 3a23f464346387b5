//! Who is signed in and what they may do.
//!
//! - [`password`]: argon2id hashing, off the async threads.
//! - [`session`]: the server-side session store and the typed session.
//! - [`identity`]: the signed-in user in their current org, loaded once per request.
//! - [`csrf`]: the token every state-changing request must carry.

pub mod csrf;
pub mod identity;
pub mod password;
pub mod session;

pub use identity::{Identity, SignedIn};
