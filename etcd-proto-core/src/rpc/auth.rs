//! Auth requests of the Go client's `Auth` interface: switching auth on and off
//! ([`AuthEnable`], [`AuthDisable`], [`AuthStatus`]), getting a token ([`Authenticate`]),
//! users ([`UserAdd`], [`UserGet`], [`UserList`], [`UserDelete`], [`UserChangePassword`],
//! [`UserGrantRole`], [`UserRevokeRole`]) and roles ([`RoleAdd`], [`RoleGet`], [`RoleList`],
//! [`RoleDelete`], [`RoleGrantPermission`] with a [`Permission`], [`RoleRevokePermission`]).
//!
//! Names are not checked locally: the server answers an empty user or role name with
//! [`EtcdErrorKind::UserEmpty`](crate::EtcdErrorKind) /
//! [`EtcdErrorKind::RoleEmpty`](crate::EtcdErrorKind). The `Debug` output of the requests
//! that carry a password shows `<redacted>` in its place.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use etcd_proto::authpb::{permission, Permission as PbPermission, UserAddOptions};
use etcd_proto::etcdserverpb::{
    AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse,
    AuthRoleGetRequest, AuthRoleGetResponse, AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse, AuthRoleListRequest, AuthRoleListResponse,
    AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthStatusRequest,
    AuthStatusResponse, AuthUserAddRequest, AuthUserAddResponse, AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse,
    AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse,
    AuthUserListRequest, AuthUserListResponse, AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse,
};

use super::kv::prefix_range_end;
use super::{IntoBytes, Method, RetryClass, UnaryRpc};
use crate::error::{Error, InvalidRequest};

/// Stands in for a password in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

macro_rules! empty_request {
    ($(#[$doc:meta])* $name:ident, $ctor_doc:literal, $req:ident => $resp:ident, $path:literal, $class:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        #[must_use]
        pub struct $name {
            _private: (),
        }

        impl $name {
            #[doc = $ctor_doc]
            pub fn new() -> $name {
                $name::default()
            }
        }

        impl UnaryRpc for $name {
            type Request = $req;
            type Response = $resp;
            const METHOD: Method = Method {
                path: $path,
                retry: RetryClass::$class,
            };
            fn into_request(self) -> Result<$req, Error> {
                Ok($req {})
            }
        }
    };
}

macro_rules! named_request {
    ($(#[$doc:meta])* $name:ident, $ctor_doc:literal, $req:ident { $field:ident } => $resp:ident, $path:literal, $class:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[must_use]
        pub struct $name {
            req: $req,
        }

        impl $name {
            #[doc = $ctor_doc]
            pub fn new(name: impl Into<String>) -> $name {
                $name {
                    req: $req { $field: name.into() },
                }
            }
        }

        impl UnaryRpc for $name {
            type Request = $req;
            type Response = $resp;
            const METHOD: Method = Method {
                path: $path,
                retry: RetryClass::$class,
            };
            fn into_request(self) -> Result<$req, Error> {
                Ok(self.req)
            }
        }
    };
}

empty_request! {
    /// Turns authentication on (`Auth/AuthEnable`). Needs a `root` user holding the `root`
    /// role, else [`EtcdErrorKind::RootUserNotExist`](crate::EtcdErrorKind) /
    /// [`EtcdErrorKind::RootRoleNotExist`](crate::EtcdErrorKind).
    AuthEnable, "Enables auth.", AuthEnableRequest => AuthEnableResponse,
    "/etcdserverpb.Auth/AuthEnable", NonRepeatable
}

empty_request! {
    /// Turns authentication off (`Auth/AuthDisable`).
    AuthDisable, "Disables auth.", AuthDisableRequest => AuthDisableResponse,
    "/etcdserverpb.Auth/AuthDisable", NonRepeatable
}

empty_request! {
    /// Whether authentication is on, and the auth store revision (`Auth/AuthStatus`, etcd
    /// 3.5+). Non-repeatable, as in the Go client.
    AuthStatus, "Asks for the auth status.", AuthStatusRequest => AuthStatusResponse,
    "/etcdserverpb.Auth/AuthStatus", NonRepeatable
}

/// Exchanges a user name and password for a token (`Auth/Authenticate`). Its `Debug` output
/// hides the password.
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct Authenticate {
    name: String,
    password: String,
}

impl Authenticate {
    /// Logs in as `name` with `password`.
    pub fn new(name: impl Into<String>, password: impl Into<String>) -> Authenticate {
        Authenticate {
            name: name.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Authenticate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticate")
            .field("name", &self.name)
            .field("password", &Redacted)
            .finish()
    }
}

impl UnaryRpc for Authenticate {
    type Request = AuthenticateRequest;
    type Response = AuthenticateResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Auth/Authenticate",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<AuthenticateRequest, Error> {
        Ok(AuthenticateRequest {
            name: self.name,
            password: self.password,
        })
    }
}

/// Creates a user (`Auth/UserAdd`). Its `Debug` output hides the password.
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct UserAdd {
    name: String,
    password: String,
    no_password: bool,
}

impl UserAdd {
    /// A user `name` that logs in with `password`. Like Go's `UserAdd`, the request carries
    /// explicit options with `no_password = false`.
    pub fn new(name: impl Into<String>, password: impl Into<String>) -> UserAdd {
        UserAdd {
            name: name.into(),
            password: password.into(),
            no_password: false,
        }
    }

    /// A user `name` without a password (Go's `UserAddWithOptions` with `NoPassword`): it
    /// cannot authenticate with a password, only through a TLS client certificate whose common
    /// name is `name`.
    pub fn no_password(name: impl Into<String>) -> UserAdd {
        UserAdd {
            name: name.into(),
            password: String::new(),
            no_password: true,
        }
    }
}

impl fmt::Debug for UserAdd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserAdd")
            .field("name", &self.name)
            .field("password", &Redacted)
            .field("no_password", &self.no_password)
            .finish()
    }
}

impl UnaryRpc for UserAdd {
    type Request = AuthUserAddRequest;
    type Response = AuthUserAddResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Auth/UserAdd",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<AuthUserAddRequest, Error> {
        Ok(AuthUserAddRequest {
            name: self.name,
            password: self.password,
            options: Some(UserAddOptions {
                no_password: self.no_password,
            }),
            hashed_password: String::new(),
        })
    }
}

named_request! {
    /// A user's roles (`Auth/UserGet`).
    UserGet, "Reads user `name`.", AuthUserGetRequest { name } => AuthUserGetResponse,
    "/etcdserverpb.Auth/UserGet", Repeatable
}

empty_request! {
    /// Lists every user name (`Auth/UserList`).
    UserList, "Lists the users.", AuthUserListRequest => AuthUserListResponse,
    "/etcdserverpb.Auth/UserList", Repeatable
}

named_request! {
    /// Deletes a user (`Auth/UserDelete`).
    UserDelete, "Deletes user `name`.", AuthUserDeleteRequest { name } => AuthUserDeleteResponse,
    "/etcdserverpb.Auth/UserDelete", NonRepeatable
}

/// Changes a user's password (`Auth/UserChangePassword`). Its `Debug` output hides the
/// password.
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct UserChangePassword {
    name: String,
    password: String,
}

impl UserChangePassword {
    /// Gives user `name` the password `password`.
    pub fn new(name: impl Into<String>, password: impl Into<String>) -> UserChangePassword {
        UserChangePassword {
            name: name.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for UserChangePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserChangePassword")
            .field("name", &self.name)
            .field("password", &Redacted)
            .finish()
    }
}

impl UnaryRpc for UserChangePassword {
    type Request = AuthUserChangePasswordRequest;
    type Response = AuthUserChangePasswordResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Auth/UserChangePassword",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<AuthUserChangePasswordRequest, Error> {
        Ok(AuthUserChangePasswordRequest {
            name: self.name,
            password: self.password,
            hashed_password: String::new(),
        })
    }
}

/// Grants a role to a user (`Auth/UserGrantRole`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct UserGrantRole {
    req: AuthUserGrantRoleRequest,
}

impl UserGrantRole {
    /// Grants `role` to `user`.
    pub fn new(user: impl Into<String>, role: impl Into<String>) -> UserGrantRole {
        UserGrantRole {
            req: AuthUserGrantRoleRequest {
                user: user.into(),
                role: role.into(),
            },
        }
    }
}

impl UnaryRpc for UserGrantRole {
    type Request = AuthUserGrantRoleRequest;
    type Response = AuthUserGrantRoleResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Auth/UserGrantRole",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<AuthUserGrantRoleRequest, Error> {
        Ok(self.req)
    }
}

/// Takes a role away from a user (`Auth/UserRevokeRole`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct UserRevokeRole {
    req: AuthUserRevokeRoleRequest,
}

impl UserRevokeRole {
    /// Revokes `role` from `user`.
    pub fn new(user: impl Into<String>, role: impl Into<String>) -> UserRevokeRole {
        UserRevokeRole {
            req: AuthUserRevokeRoleRequest {
                name: user.into(),
                role: role.into(),
            },
        }
    }
}

impl UnaryRpc for UserRevokeRole {
    type Request = AuthUserRevokeRoleRequest;
    type Response = AuthUserRevokeRoleResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Auth/UserRevokeRole",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<AuthUserRevokeRoleRequest, Error> {
        Ok(self.req)
    }
}

named_request! {
    /// Creates a role (`Auth/RoleAdd`).
    RoleAdd, "Creates role `name`.", AuthRoleAddRequest { name } => AuthRoleAddResponse,
    "/etcdserverpb.Auth/RoleAdd", NonRepeatable
}

named_request! {
    /// A role's permissions (`Auth/RoleGet`).
    RoleGet, "Reads role `name`.", AuthRoleGetRequest { role } => AuthRoleGetResponse,
    "/etcdserverpb.Auth/RoleGet", Repeatable
}

empty_request! {
    /// Lists every role name (`Auth/RoleList`).
    RoleList, "Lists the roles.", AuthRoleListRequest => AuthRoleListResponse,
    "/etcdserverpb.Auth/RoleList", Repeatable
}

named_request! {
    /// Deletes a role (`Auth/RoleDelete`).
    RoleDelete, "Deletes role `name`.", AuthRoleDeleteRequest { role } => AuthRoleDeleteResponse,
    "/etcdserverpb.Auth/RoleDelete", NonRepeatable
}

/// What a [`Permission`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PermissionType {
    /// Reads.
    Read,
    /// Writes.
    Write,
    /// Both.
    ReadWrite,
}

impl PermissionType {
    /// The wire enum.
    pub fn wire(self) -> permission::Type {
        match self {
            PermissionType::Read => permission::Type::Read,
            PermissionType::Write => permission::Type::Write,
            PermissionType::ReadWrite => permission::Type::Readwrite,
        }
    }

    /// Reads a wire value (as found in [`PbPermission::perm_type`]); `None` for a value this
    /// client does not know.
    pub fn from_wire(value: i32) -> Option<PermissionType> {
        match permission::Type::try_from(value).ok()? {
            permission::Type::Read => Some(PermissionType::Read),
            permission::Type::Write => Some(PermissionType::Write),
            permission::Type::Readwrite => Some(PermissionType::ReadWrite),
        }
    }
}

/// `READ`, `WRITE` or `READWRITE`, as etcd names them.
impl fmt::Display for PermissionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire().as_str_name())
    }
}

/// Parses `read`, `write` or `readwrite` in any case, as Go's `StrToPermissionType`; anything
/// else is [`InvalidRequest::InvalidPermissionType`].
impl FromStr for PermissionType {
    type Err = InvalidRequest;

    fn from_str(s: &str) -> Result<PermissionType, InvalidRequest> {
        if s.eq_ignore_ascii_case("read") {
            Ok(PermissionType::Read)
        } else if s.eq_ignore_ascii_case("write") {
            Ok(PermissionType::Write)
        } else if s.eq_ignore_ascii_case("readwrite") {
            Ok(PermissionType::ReadWrite)
        } else {
            Err(InvalidRequest::InvalidPermissionType(s.to_owned()))
        }
    }
}

impl From<PermissionType> for permission::Type {
    fn from(kind: PermissionType) -> permission::Type {
        kind.wire()
    }
}

/// A permission on one key or a key range, granted to a role with [`RoleGrantPermission`].
///
/// `range_end` follows the KV rules: empty = just `key`; otherwise `[key, range_end)`, where a
/// `range_end` of `"\0"` means "every key `>= key`". [`Permission::with_prefix`],
/// [`Permission::with_range_end`] and [`Permission::from_key`] each set `range_end` from the
/// current key; the last one called wins. Every key (empty key with `range_end` `"\0"`, which
/// is what `with_prefix` or `from_key` on an empty key give) is sent as key `"\0"`, the form
/// the server accepts (etcdctl does the same); any other empty key is sent as is and the server
/// rejects it with [`EtcdErrorKind::InvalidAuthMgmt`](crate::EtcdErrorKind).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[must_use]
pub struct Permission {
    /// What is allowed.
    pub kind: PermissionType,
    /// The key, or the start of the range.
    pub key: Bytes,
    /// The end of the range (exclusive); empty for a single key.
    pub range_end: Bytes,
}

/// The wire key for a permission range: the whole key space is `("\0", "\0")`.
fn permission_key(key: Bytes, range_end: &[u8]) -> Bytes {
    if key.is_empty() && range_end == b"\0" {
        Bytes::from_static(b"\0")
    } else {
        key
    }
}

impl Permission {
    /// A `kind` permission on `key`.
    pub fn new(kind: PermissionType, key: impl IntoBytes) -> Permission {
        Permission {
            kind,
            key: key.into_bytes(),
            range_end: Bytes::new(),
        }
    }

    /// Allows reading `key`.
    pub fn read(key: impl IntoBytes) -> Permission {
        Permission::new(PermissionType::Read, key)
    }

    /// Allows writing `key`.
    pub fn write(key: impl IntoBytes) -> Permission {
        Permission::new(PermissionType::Write, key)
    }

    /// Allows reading and writing `key`.
    pub fn read_write(key: impl IntoBytes) -> Permission {
        Permission::new(PermissionType::ReadWrite, key)
    }

    /// Covers every key that starts with the key (empty key: every key).
    pub fn with_prefix(mut self) -> Self {
        self.range_end = prefix_range_end(&self.key);
        self
    }

    /// Covers `[key, end)`.
    pub fn with_range_end(mut self, end: impl IntoBytes) -> Self {
        self.range_end = end.into_bytes();
        self
    }

    /// Covers every key `>=` the key (empty key: every key).
    pub fn from_key(mut self) -> Self {
        self.range_end = Bytes::from_static(b"\0");
        self
    }

    /// The wire message.
    pub fn wire(self) -> PbPermission {
        PbPermission {
            perm_type: self.kind.wire() as i32,
            key: permission_key(self.key, &self.range_end),
            range_end: self.range_end,
        }
    }

    /// Reads a wire permission (as listed by [`RoleGet`]); `None` if its type is unknown.
    /// The key and range end are taken as they are.
    pub fn from_wire(perm: PbPermission) -> Option<Permission> {
        Some(Permission {
            kind: PermissionType::from_wire(perm.perm_type)?,
            key: perm.key,
            range_end: perm.range_end,
        })
    }
}

impl From<Permission> for PbPermission {
    fn from(perm: Permission) -> PbPermission {
        perm.wire()
    }
}

/// Grants a permission to a role (`Auth/RoleGrantPermission`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct RoleGrantPermission {
    role: String,
    perm: Permission,
}

impl RoleGrantPermission {
    /// Grants `perm` to `role`.
    pub fn new(role: impl Into<String>, perm: Permission) -> RoleGrantPermission {
        RoleGrantPermission {
            role: role.into(),
            perm,
        }
    }
}

impl UnaryRpc for RoleGrantPermission {
    type Request = AuthRoleGrantPermissionRequest;
    type Response = AuthRoleGrantPermissionResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Auth/RoleGrantPermission",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<AuthRoleGrantPermissionRequest, Error> {
        Ok(AuthRoleGrantPermissionRequest {
            name: self.role,
            perm: Some(self.perm.wire()),
        })
    }
}

/// Takes a permission away from a role (`Auth/RoleRevokePermission`). The key and range end
/// must match the granted permission exactly; they follow the same rules as [`Permission`]
/// (the last of [`range_end`](Self::range_end), [`prefix`](Self::prefix) and
/// [`from_key`](Self::from_key) wins; every key is sent as `("\0", "\0")`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct RoleRevokePermission {
    role: String,
    key: Bytes,
    range_end: Bytes,
}

impl RoleRevokePermission {
    /// Revokes the permission of `role` on the single key `key`.
    pub fn new(role: impl Into<String>, key: impl IntoBytes) -> RoleRevokePermission {
        RoleRevokePermission {
            role: role.into(),
            key: key.into_bytes(),
            range_end: Bytes::new(),
        }
    }

    /// Revokes the permission on `[key, end)`.
    pub fn range_end(mut self, end: impl IntoBytes) -> Self {
        self.range_end = end.into_bytes();
        self
    }

    /// Revokes the permission on every key with the key as prefix (empty key: every key).
    pub fn prefix(mut self) -> Self {
        self.range_end = prefix_range_end(&self.key);
        self
    }

    /// Revokes the permission on every key `>=` the key (empty key: every key).
    pub fn from_key(mut self) -> Self {
        self.range_end = Bytes::from_static(b"\0");
        self
    }
}

impl UnaryRpc for RoleRevokePermission {
    type Request = AuthRoleRevokePermissionRequest;
    type Response = AuthRoleRevokePermissionResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Auth/RoleRevokePermission",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<AuthRoleRevokePermissionRequest, Error> {
        Ok(AuthRoleRevokePermissionRequest {
            role: self.role,
            key: permission_key(self.key, &self.range_end),
            range_end: self.range_end,
        })
    }
}
