//! Hand-written `Debug` impls for messages that carry secrets.
//!
//! prost-build is told (`skip_debug`) not to derive `Debug` for these; the
//! impls below print every field normally except passwords and tokens.

use core::fmt;

use crate::etcdserverpb::{
    AuthUserAddRequest, AuthUserChangePasswordRequest, AuthenticateRequest, AuthenticateResponse,
};

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for AuthenticateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateRequest")
            .field("name", &self.name)
            .field("password", &Redacted)
            .finish()
    }
}

impl fmt::Debug for AuthenticateResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateResponse")
            .field("header", &self.header)
            .field("token", &Redacted)
            .finish()
    }
}

impl fmt::Debug for AuthUserAddRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthUserAddRequest")
            .field("name", &self.name)
            .field("password", &Redacted)
            .field("options", &self.options)
            .field("hashed_password", &Redacted)
            .finish()
    }
}

impl fmt::Debug for AuthUserChangePasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthUserChangePasswordRequest")
            .field("name", &self.name)
            .field("password", &Redacted)
            .field("hashed_password", &Redacted)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authpb::UserAddOptions;
    use crate::etcdserverpb::ResponseHeader;

    const SECRET: &str = "hunter2-s3cr3t";

    fn assert_redacted(debug: &str, visible: &[&str]) {
        assert!(!debug.contains(SECRET), "secret leaked: {debug}");
        assert!(debug.contains("<redacted>"), "no redaction marker: {debug}");
        for v in visible {
            assert!(debug.contains(v), "{v:?} missing from {debug}");
        }
    }

    #[test]
    fn authenticate_request_hides_password() {
        let req = AuthenticateRequest {
            name: "alice".into(),
            password: SECRET.into(),
        };
        assert_redacted(&format!("{req:?}"), &["alice", "password"]);
        assert_redacted(&format!("{req:#?}"), &["alice"]);
    }

    #[test]
    fn authenticate_response_hides_token() {
        let resp = AuthenticateResponse {
            header: Some(ResponseHeader {
                cluster_id: 77,
                member_id: 88,
                revision: 5,
                raft_term: 2,
            }),
            token: SECRET.into(),
        };
        assert_redacted(&format!("{resp:?}"), &["cluster_id: 77", "token"]);
    }

    #[test]
    fn user_add_request_hides_passwords() {
        let req = AuthUserAddRequest {
            name: "bob".into(),
            password: SECRET.into(),
            options: Some(UserAddOptions { no_password: true }),
            hashed_password: SECRET.into(),
        };
        assert_redacted(&format!("{req:?}"), &["bob", "no_password: true"]);
    }

    #[test]
    fn change_password_request_hides_passwords() {
        let req = AuthUserChangePasswordRequest {
            name: "carol".into(),
            password: SECRET.into(),
            hashed_password: SECRET.into(),
        };
        assert_redacted(&format!("{req:?}"), &["carol"]);
    }

    #[test]
    fn nested_in_other_debug_output_still_redacted() {
        let reqs = vec![AuthenticateRequest {
            name: "dave".into(),
            password: SECRET.into(),
        }];
        assert_redacted(&format!("{:?}", Some(reqs)), &["dave"]);
    }
}
