//! What a user may do: the `users.role` column's values (its CHECK constraint), also carried
//! in access tokens.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Role {
    User,
    Coach,
    Admin,
}

impl Role {
    /// Coaches and admins: they may issue invitations and see their users.
    pub fn is_staff(self) -> bool {
        matches!(self, Role::Coach | Role::Admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_their_lowercase_names() {
        assert_eq!(serde_json::to_value(Role::Coach).expect("json"), "coach");
        assert_eq!(serde_json::from_value::<Role>("admin".into()).expect("role"), Role::Admin);
        assert!(serde_json::from_value::<Role>("root".into()).is_err());
        assert!(Role::Admin.is_staff() && Role::Coach.is_staff() && !Role::User.is_staff());
    }
}
