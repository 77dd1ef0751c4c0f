//! Typed errors. Every etcd error string is its own [`EtcdErrorKind`], matched on the message
//! (the server sometimes sends a different code for the same error); transport, deadline,
//! cancellation, local validation and protocol errors have their own variants; every error says
//! whether retrying can help ([`Error::is_retryable`]) and whether a write may have been applied
//! ([`Error::outcome_unknown`]).

use std::fmt;

use crate::status::{Code, Status};

/// Which way a message was travelling when it hit a size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A request the client was about to send.
    Send,
    /// A response the client received.
    Receive,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Send => "send",
            Direction::Receive => "receive",
        })
    }
}

/// Any error of an etcd call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a known etcd error.
    #[error("{0}")]
    Etcd(EtcdError),
    /// The server (or an intermediary) answered with a gRPC status that is not a known etcd
    /// error.
    #[error("grpc status {0}")]
    Status(Status),
    /// The call's deadline passed. `request_sent` tells whether the request had left the
    /// client: if so, a write may or may not have been applied.
    #[error("deadline exceeded{}", if *.request_sent { " (the request was sent; its outcome is unknown)" } else { " before the request was sent" })]
    DeadlineExceeded {
        /// Whether the request had been handed to the transport.
        request_sent: bool,
    },
    /// The caller cancelled the call.
    #[error("call cancelled")]
    Cancelled,
    /// The connection failed. `request_sent` tells whether the request had left the client.
    #[error("transport error: {message}{}", if *.request_sent { " (the request was sent; its outcome is unknown)" } else { "" })]
    Transport {
        /// What failed.
        message: String,
        /// Whether the request had been handed to the transport.
        request_sent: bool,
    },
    /// A message exceeded a size limit; on [`Direction::Send`] nothing was sent.
    #[error("{direction} message of {size} bytes exceeds the {direction} limit of {limit} bytes")]
    MessageTooLarge {
        /// Encoded message size.
        size: usize,
        /// The configured limit.
        limit: usize,
        /// Which direction.
        direction: Direction,
    },
    /// The request was rejected locally before anything was sent.
    #[error("invalid request: {0}")]
    InvalidRequest(InvalidRequest),
    /// The client configuration is invalid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The peer broke the gRPC or HTTP/2 protocol (bad framing, undecodable response, ...).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The client was closed.
    #[error("client closed")]
    ClientClosed,
    /// A lease kept alive by this client is gone.
    #[error("lease {lease:x} lost: {reason}")]
    LeaseLost {
        /// The lease.
        lease: i64,
        /// Why.
        reason: crate::LeaseLostReason,
    },
    /// A watcher's start revision was compacted away: events before `compact_revision` are
    /// gone. Watch again from `compact_revision` (after re-reading the state) to continue.
    #[error("watch start revision was compacted (oldest available revision {compact_revision})")]
    WatchCompacted {
        /// The compaction revision: the oldest revision still available.
        compact_revision: i64,
    },
}

impl Error {
    /// Builds the error for a non-OK status: a known etcd message becomes [`Error::Etcd`].
    pub fn from_status(status: Status) -> Error {
        match EtcdErrorKind::from_message(&status.message) {
            Some(kind) => Error::Etcd(EtcdError {
                kind,
                code: status.code,
                message: status.message,
            }),
            None => Error::Status(status),
        }
    }

    /// The etcd error kind, if this is a known etcd error.
    pub fn etcd_kind(&self) -> Option<EtcdErrorKind> {
        match self {
            Error::Etcd(e) => Some(e.kind),
            _ => None,
        }
    }

    /// The gRPC code this error carries or corresponds to.
    pub fn code(&self) -> Code {
        match self {
            Error::Etcd(e) => e.kind.canonical_code(),
            Error::Status(s) => s.code,
            Error::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            Error::Cancelled | Error::ClientClosed => Code::Cancelled,
            Error::Transport { .. } => Code::Unavailable,
            Error::MessageTooLarge { .. } => Code::ResourceExhausted,
            Error::InvalidRequest(_) | Error::InvalidConfig(_) => Code::InvalidArgument,
            Error::Protocol(_) => Code::Internal,
            Error::WatchCompacted { .. } => Code::OutOfRange,
            Error::LeaseLost { .. } => Code::NotFound,
        }
    }

    /// Whether sending the same request again (later, or to another member) can succeed.
    /// False for errors that the same request will always meet (bad arguments, compacted
    /// revisions, permission denied, ...), for cancellation and for a closed client.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Etcd(e) => e.kind.is_retryable(),
            Error::Status(s) => matches!(
                s.code,
                Code::Unavailable | Code::ResourceExhausted | Code::Aborted
            ),
            Error::DeadlineExceeded { .. } | Error::Transport { .. } => true,
            Error::Cancelled
            | Error::ClientClosed
            | Error::MessageTooLarge { .. }
            | Error::InvalidRequest(_)
            | Error::InvalidConfig(_)
            | Error::Protocol(_)
            | Error::WatchCompacted { .. }
            | Error::LeaseLost { .. } => false,
        }
    }

    /// True when the request left the client but no answer came back: a write may or may not
    /// have been applied.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            Error::DeadlineExceeded { request_sent: true }
                | Error::Transport {
                    request_sent: true,
                    ..
                }
        )
    }
}

/// A local validation failure: the request was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// A range was given both a prefix and from-key end.
    #[error("`prefix` and `from_key` cannot be set at the same time, choose one")]
    PrefixAndFromKey,
    /// A transaction builder was used out of order (Go panics here).
    #[error("transaction misuse: {0}")]
    TxnMisuse(&'static str),
    /// A request field holds a value the server cannot accept.
    #[error("{0}")]
    Invalid(String),
    /// A lease grant asked for a negative TTL.
    #[error("lease TTL must not be negative, got {0}")]
    NegativeLeaseTtl(i64),
    /// A member add or update was given no peer URLs (Go: "no valid URLs given").
    #[error("no valid URLs given")]
    NoPeerUrls,
    /// A member add or update was given a peer URL that the Go client (`types.NewURLs`)
    /// rejects.
    #[error("{reason}: {url}")]
    InvalidPeerUrl {
        /// The URL, as given.
        url: String,
        /// What is wrong with it.
        reason: PeerUrlError,
    },
    /// A permission type that is not `read`, `write` or `readwrite` (any case).
    #[error("invalid permission type: {0}")]
    InvalidPermissionType(String),
}

/// Why a peer URL was rejected; the messages are the Go client's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerUrlError {
    /// The text is not a URL at all (Go's `url.Parse` fails); says why.
    #[error("malformed URL ({0})")]
    Malformed(String),
    /// The scheme is not `http`, `https`, `unix` or `unixs`.
    #[error("URL scheme must be http, https, unix, or unixs")]
    Scheme,
    /// An `http`/`https` URL whose authority is not `host:port`.
    #[error("URL address does not have the form \"host:port\"")]
    NotHostPort,
    /// An `http`/`https` URL with a path (even just `/`).
    #[error("URL must not contain a path")]
    HasPath,
}

impl From<InvalidRequest> for Error {
    fn from(e: InvalidRequest) -> Self {
        Error::InvalidRequest(e)
    }
}

/// A known etcd server error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdError {
    /// Which error.
    pub kind: EtcdErrorKind,
    /// The code the server actually sent (may differ from the canonical one).
    pub code: Code,
    /// The server's message, as sent.
    pub message: String,
}

impl fmt::Display for EtcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.message, self.code.name())
    }
}

macro_rules! etcd_errors {
    ($( $(#[$doc:meta])* $kind:ident = $code:ident, $msg:literal; )*) => {
        /// Every error string etcd sends (3.4 to 3.7), one variant each. Matched on the exact
        /// message, as the official client does.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum EtcdErrorKind {
            $( $(#[$doc])* $kind, )*
        }

        impl EtcdErrorKind {
            /// Every kind, in table order.
            pub const ALL: &'static [EtcdErrorKind] = &[$(EtcdErrorKind::$kind,)*];

            /// The exact message the server sends.
            pub fn message(self) -> &'static str {
                match self { $( EtcdErrorKind::$kind => $msg, )* }
            }

            /// The canonical gRPC code of this error (what etcd defines it with).
            pub fn canonical_code(self) -> Code {
                match self { $( EtcdErrorKind::$kind => Code::$code, )* }
            }

            fn lookup(message: &str) -> Option<EtcdErrorKind> {
                match message {
                    $( $msg => Some(EtcdErrorKind::$kind), )*
                    _ => None,
                }
            }
        }
    };
}

etcd_errors! {
    /// Empty key in a Range, Put, DeleteRange or Compare.
    EmptyKey = InvalidArgument, "etcdserver: key is not provided";
    /// ignore_value/ignore_lease on a missing key; an empty Txn op.
    KeyNotFound = InvalidArgument, "etcdserver: key not found";
    /// ignore_value with a non-empty value.
    ValueProvided = InvalidArgument, "etcdserver: value is provided";
    /// ignore_lease with a lease.
    LeaseProvided = InvalidArgument, "etcdserver: lease is provided";
    /// Txn larger than --max-txn-ops.
    TooManyOps = InvalidArgument, "etcdserver: too many operations in txn request";
    /// Txn writes a key twice.
    DuplicateKey = InvalidArgument, "etcdserver: duplicate key given in txn request";
    /// Revision already compacted.
    Compacted = OutOfRange, "etcdserver: mvcc: required revision has been compacted";
    /// Revision in the future.
    FutureRev = OutOfRange, "etcdserver: mvcc: required revision is a future revision";
    /// Backend quota exhausted (NOSPACE alarm).
    NoSpace = ResourceExhausted, "etcdserver: mvcc: database space exceeded";
    /// Unknown lease.
    LeaseNotFound = NotFound, "etcdserver: requested lease not found";
    /// Lease ID in use.
    LeaseExist = FailedPrecondition, "etcdserver: lease already exists";
    /// Lease TTL above the maximum.
    LeaseTtlTooLarge = OutOfRange, "etcdserver: too large lease TTL";
    /// Final status of a watch stream cancelled server-side.
    WatchCanceled = Cancelled, "etcdserver: watch canceled";
    /// MemberAdd with an existing ID.
    MemberExist = FailedPrecondition, "etcdserver: member ID already exist";
    /// Peer URLs already used.
    PeerUrlExist = FailedPrecondition, "etcdserver: Peer URLs already exists";
    /// Reconfiguration would endanger quorum.
    MemberNotEnoughStarted = FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members";
    /// Malformed peer URLs.
    MemberBadUrls = InvalidArgument, "etcdserver: given member URLs are invalid";
    /// Unknown member.
    MemberNotFound = NotFound, "etcdserver: member not found";
    /// Promote of a voting member.
    MemberNotLearner = FailedPrecondition, "etcdserver: can only promote a learner member";
    /// Promote of a learner not in sync.
    MemberLearnerNotReady = FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader";
    /// Learner limit reached.
    TooManyLearners = FailedPrecondition, "etcdserver: too many learner members in cluster";
    /// Cluster ID mismatch.
    ClusterIdMismatch = FailedPrecondition, "etcdserver: cluster ID mismatch";
    /// Request above --max-request-bytes.
    RequestTooLarge = InvalidArgument, "etcdserver: request is too large";
    /// Apply backlog too long.
    TooManyRequests = ResourceExhausted, "etcdserver: too many requests";
    /// AuthEnable without a root user.
    RootUserNotExist = FailedPrecondition, "etcdserver: root user does not exist";
    /// AuthEnable while root lacks the root role.
    RootRoleNotExist = FailedPrecondition, "etcdserver: root user does not have root role";
    /// UserAdd of an existing user.
    UserAlreadyExist = FailedPrecondition, "etcdserver: user name already exists";
    /// Empty user name, or no token while auth is enabled.
    UserEmpty = InvalidArgument, "etcdserver: user name is empty";
    /// Unknown user.
    UserNotFound = FailedPrecondition, "etcdserver: user name not found";
    /// RoleAdd of an existing role.
    RoleAlreadyExist = FailedPrecondition, "etcdserver: role name already exists";
    /// Unknown role.
    RoleNotFound = FailedPrecondition, "etcdserver: role name not found";
    /// Empty role name.
    RoleEmpty = InvalidArgument, "etcdserver: role name is empty";
    /// Wrong user name or password.
    AuthFailed = InvalidArgument, "etcdserver: authentication failed, invalid user ID or password";
    /// RoleGrantPermission without a permission.
    PermissionNotGiven = InvalidArgument, "etcdserver: permission not given";
    /// The user lacks the permission.
    PermissionDenied = PermissionDenied, "etcdserver: permission denied";
    /// UserRevokeRole of a role the user lacks.
    RoleNotGranted = FailedPrecondition, "etcdserver: role is not granted to the user";
    /// RoleRevokePermission of a permission the role lacks.
    PermissionNotGranted = FailedPrecondition, "etcdserver: permission is not granted to the role";
    /// Authenticate while auth is disabled.
    AuthNotEnabled = FailedPrecondition, "etcdserver: authentication is not enabled";
    /// Unknown or expired token.
    InvalidAuthToken = Unauthenticated, "etcdserver: invalid auth token";
    /// Forbidden auth change.
    InvalidAuthMgmt = InvalidArgument, "etcdserver: invalid auth management";
    /// Auth store changed during the request.
    AuthOldRevision = InvalidArgument, "etcdserver: revision of auth store is old";
    /// The member has no leader.
    NoLeader = Unavailable, "etcdserver: no leader";
    /// Leader-only call sent to a follower.
    NotLeader = FailedPrecondition, "etcdserver: not leader";
    /// Leader changed during the request.
    LeaderChanged = Unavailable, "etcdserver: leader changed";
    /// v3 API not yet enabled on the member.
    NotCapable = Unavailable, "etcdserver: not capable";
    /// Member shutting down.
    Stopped = Unavailable, "etcdserver: server stopped";
    /// Raft proposal timed out.
    Timeout = Unavailable, "etcdserver: request timed out";
    /// Proposal timed out after leader loss.
    TimeoutDueToLeaderFail = Unavailable, "etcdserver: request timed out, possibly due to previous leader failure";
    /// Proposal timed out after peer connection loss.
    TimeoutDueToConnectionLost = Unavailable, "etcdserver: request timed out, possibly due to connection lost";
    /// Lease call waited too long for the applied index.
    TimeoutWaitAppliedIndex = Unavailable, "etcdserver: request timed out, waiting for the applied index took too long";
    /// Leadership transfer timed out.
    LeaderTransferTimeout = Unknown, "etcdserver: request timed out, leader transfer took too long";
    /// Cluster not healthy enough.
    Unhealthy = Unavailable, "etcdserver: unhealthy cluster";
    /// CORRUPT alarm active.
    Corrupt = DataLoss, "etcdserver: corrupt cluster";
    /// RPC sent to a learner.
    NotSupportedForLearner = Unavailable, "etcdserver: rpc not supported for learner";
    /// MoveLeader target not a voting member.
    BadLeaderTransferee = FailedPrecondition, "etcdserver: bad leader transferee";
    /// Downgrade: cluster version unknown.
    ClusterVersionUnavailable = Unavailable, "etcdserver: cluster version not found during downgrade";
    /// Downgrade: malformed target version.
    WrongDowngradeVersionFormat = InvalidArgument, "etcdserver: wrong downgrade target version format";
    /// Downgrade: target version not allowed.
    InvalidDowngradeTargetVersion = InvalidArgument, "etcdserver: invalid downgrade target version";
    /// Downgrade already running.
    DowngradeInProcess = FailedPrecondition, "etcdserver: cluster has a downgrade job in progress";
    /// Downgrade cancel with nothing running.
    NoInflightDowngrade = FailedPrecondition, "etcdserver: no inflight downgrade job";
    /// Proposal canceled (3.6+ spelling).
    RequestCanceled = Cancelled, "etcdserver: request canceled";
    /// Proposal canceled (3.5 and older spelling, sent as UNKNOWN).
    RequestCancelledLegacy = Unknown, "etcdserver: request cancelled";
    /// Server-side deadline.
    ContextDeadlineExceeded = DeadlineExceeded, "etcdserver: context deadline exceeded";
    /// Invalid client-api-version metadata (3.6+).
    InvalidClientApiVersion = InvalidArgument, "etcdserver: invalid client api version";
    /// sort_order / sort_target out of range (3.6+).
    InvalidSortOption = InvalidArgument, "etcdserver: invalid sort option";
    /// Authenticate for a user created without a password.
    NoPasswordUser = Unknown, "auth: authentication failed, password was given for no password user";
    /// Election Proclaim/Resign without a leader key.
    ElectionLeaderNotProvided = Unknown, "\"leader\" field must be provided";
    /// Election Proclaim/Resign with a stale leader key.
    ElectionNotLeader = Unknown, "election: not leader";
    /// Election Leader with nobody elected.
    ElectionNoLeader = Unknown, "election: no leader";
}

impl EtcdErrorKind {
    /// Matches a server message. Also accepts the `rpc error: code = X desc = MESSAGE` rendering
    /// etcd uses in watch cancel reasons.
    pub fn from_message(message: &str) -> Option<EtcdErrorKind> {
        EtcdErrorKind::lookup(message).or_else(|| {
            let (_, desc) = message.split_once(" desc = ")?;
            EtcdErrorKind::lookup(desc)
        })
    }

    /// Whether the same request can succeed when sent again (later or to another member).
    pub fn is_retryable(self) -> bool {
        use EtcdErrorKind::*;
        matches!(
            self,
            NoLeader
                | LeaderChanged
                | NotCapable
                | Stopped
                | Timeout
                | TimeoutDueToLeaderFail
                | TimeoutDueToConnectionLost
                | TimeoutWaitAppliedIndex
                | LeaderTransferTimeout
                | Unhealthy
                | NotSupportedForLearner
                | ClusterVersionUnavailable
                | TooManyRequests
                | InvalidAuthToken
                | AuthOldRevision
                | RequestCanceled
                | RequestCancelledLegacy
                | ContextDeadlineExceeded
        )
    }
}

impl fmt::Display for EtcdErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}
