//! Typed ids, so an org id is never passed where a user id belongs.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($name:ident) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            pub fn new(v: i64) -> Self {
                Self(v)
            }
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(OrgId);
id_type!(UserId);

/// Who did something: a signed-in person or an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    Key(i64),
}

impl Actor {
    /// The user id column's value.
    pub fn user(self) -> Option<i64> {
        match self {
            Actor::User(u) => Some(u.get()),
            Actor::Key(_) => None,
        }
    }

    /// The API key id column's value.
    pub fn key(self) -> Option<i64> {
        match self {
            Actor::Key(k) => Some(k),
            Actor::User(_) => None,
        }
    }
}

impl From<UserId> for Actor {
    fn from(u: UserId) -> Actor {
        Actor::User(u)
    }
}
