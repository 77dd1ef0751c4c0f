//! Maintenance requests: alarms ([`AlarmList`], [`AlarmDisarm`]), [`Status`], [`Defragment`],
//! [`Hash`](struct@Hash), [`HashKv`], [`MoveLeader`] and [`Downgrade`].
//!
//! The Go client sends Status, Defragment and HashKV to one named endpoint; these builders
//! only describe the request, and where it goes is the caller's choice. Go's 3.5 interface has
//! no Hash or Downgrade (their retry classes exist all the same) and no way to raise an alarm;
//! a raw [`AlarmRequest`] can still do the latter.

use etcd_proto::etcdserverpb::{
    alarm_request::AlarmAction, downgrade_request::DowngradeAction, AlarmMember, AlarmRequest,
    AlarmResponse, AlarmType as PbAlarmType, DefragmentRequest, DefragmentResponse,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, StatusRequest, StatusResponse,
};

use super::{Method, RetryClass, UnaryRpc};
use crate::error::Error;

/// An alarm type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmType {
    /// No alarm; in a disarm, "every alarm" (see [`AlarmDisarm`]).
    None,
    /// The backend ran out of quota: the cluster accepts only reads and deletes.
    NoSpace,
    /// A member's data is inconsistent with the others.
    Corrupt,
}

impl AlarmType {
    /// The wire enum.
    pub fn wire(self) -> PbAlarmType {
        match self {
            AlarmType::None => PbAlarmType::None,
            AlarmType::NoSpace => PbAlarmType::Nospace,
            AlarmType::Corrupt => PbAlarmType::Corrupt,
        }
    }

    /// Reads a wire value (as found in [`AlarmMember::alarm`]); `None` for a value this client
    /// does not know.
    pub fn from_wire(value: i32) -> Option<AlarmType> {
        match PbAlarmType::try_from(value).ok()? {
            PbAlarmType::None => Some(AlarmType::None),
            PbAlarmType::Nospace => Some(AlarmType::NoSpace),
            PbAlarmType::Corrupt => Some(AlarmType::Corrupt),
        }
    }
}

impl From<AlarmType> for PbAlarmType {
    fn from(alarm: AlarmType) -> PbAlarmType {
        alarm.wire()
    }
}

/// Lists every raised alarm of every member (`Maintenance/Alarm` with GET, member 0, NONE).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct AlarmList {
    _private: (),
}

impl AlarmList {
    /// Lists the alarms.
    pub fn new() -> AlarmList {
        AlarmList::default()
    }
}

impl UnaryRpc for AlarmList {
    type Request = AlarmRequest;
    type Response = AlarmResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Maintenance/Alarm",
        retry: RetryClass::Repeatable,
    };
    fn into_request(self) -> Result<AlarmRequest, Error> {
        Ok(AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: PbAlarmType::None as i32,
        })
    }
}

/// Clears one alarm (`Maintenance/Alarm` with DEACTIVATE); the response lists the alarm if it
/// was raised.
///
/// This is the single request. The Go client's `AlarmDisarm` with member 0 and
/// [`AlarmType::None`] means "every alarm": it lists the alarms and disarms each in turn,
/// which takes several requests and belongs to the client layer (the async client's
/// `alarm_disarm` does it). Sent as is, member 0 with `None` matches no raised alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct AlarmDisarm {
    member_id: u64,
    alarm: i32,
}

impl AlarmDisarm {
    /// Clears alarm `alarm` of member `member_id`.
    pub fn new(member_id: u64, alarm: AlarmType) -> AlarmDisarm {
        AlarmDisarm {
            member_id,
            alarm: alarm.wire() as i32,
        }
    }
}

/// Clears an alarm as listed by [`AlarmList`], even of a type this client does not know.
impl From<AlarmMember> for AlarmDisarm {
    fn from(member: AlarmMember) -> AlarmDisarm {
        AlarmDisarm {
            member_id: member.member_id,
            alarm: member.alarm,
        }
    }
}

impl UnaryRpc for AlarmDisarm {
    type Request = AlarmRequest;
    type Response = AlarmResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Maintenance/Alarm",
        retry: RetryClass::Repeatable,
    };
    fn into_request(self) -> Result<AlarmRequest, Error> {
        Ok(AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id: self.member_id,
            alarm: self.alarm,
        })
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

empty_request! {
    /// The status of the member that receives it: version, database size, leader, raft index
    /// and term, errors (`Maintenance/Status`).
    Status, "Asks for the status.", StatusRequest => StatusResponse,
    "/etcdserverpb.Maintenance/Status", Repeatable
}

empty_request! {
    /// Defragments the backend of the member that receives it (`Maintenance/Defragment`). It
    /// blocks the member while it runs.
    Defragment, "Asks for a defragmentation.", DefragmentRequest => DefragmentResponse,
    "/etcdserverpb.Maintenance/Defragment", NonRepeatable
}

empty_request! {
    /// The hash of the whole backend of the member that receives it (`Maintenance/Hash`;
    /// for testing, not in Go's 3.5 interface).
    Hash, "Asks for the backend hash.", HashRequest => HashResponse,
    "/etcdserverpb.Maintenance/Hash", Repeatable
}

/// The hash of the MVCC key space up to a revision, of the member that receives it
/// (`Maintenance/HashKV`): compare members to find corruption.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct HashKv {
    req: HashKvRequest,
}

impl HashKv {
    /// Hashes the keys up to `revision` (0 = the latest revision).
    pub fn new(revision: i64) -> HashKv {
        HashKv {
            req: HashKvRequest { revision },
        }
    }
}

impl UnaryRpc for HashKv {
    type Request = HashKvRequest;
    type Response = HashKvResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Maintenance/HashKV",
        retry: RetryClass::Repeatable,
    };
    fn into_request(self) -> Result<HashKvRequest, Error> {
        Ok(self.req)
    }
}

/// Transfers the leadership to another voting member (`Maintenance/MoveLeader`). Must reach
/// the current leader, else [`EtcdErrorKind::NotLeader`](crate::EtcdErrorKind). Repeatable,
/// as in the Go client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct MoveLeader {
    req: MoveLeaderRequest,
}

impl MoveLeader {
    /// Makes member `target_id` the leader.
    pub fn new(target_id: u64) -> MoveLeader {
        MoveLeader {
            req: MoveLeaderRequest { target_id },
        }
    }
}

impl UnaryRpc for MoveLeader {
    type Request = MoveLeaderRequest;
    type Response = MoveLeaderResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Maintenance/MoveLeader",
        retry: RetryClass::Repeatable,
    };
    fn into_request(self) -> Result<MoveLeaderRequest, Error> {
        Ok(self.req)
    }
}

/// A cluster downgrade step (`Maintenance/Downgrade`, etcd 3.5+; not in Go's 3.5 interface).
///
/// The version is a target cluster version such as `"3.5"` or `"3.5.0"`; it is not checked
/// locally (the server answers
/// [`EtcdErrorKind::WrongDowngradeVersionFormat`](crate::EtcdErrorKind) or
/// [`EtcdErrorKind::InvalidDowngradeTargetVersion`](crate::EtcdErrorKind)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Downgrade {
    req: DowngradeRequest,
}

impl Downgrade {
    fn with(action: DowngradeAction, version: String) -> Downgrade {
        Downgrade {
            req: DowngradeRequest {
                action: action as i32,
                version,
            },
        }
    }

    /// Checks whether the cluster can be downgraded to `version`, changing nothing.
    pub fn validate(version: impl Into<String>) -> Downgrade {
        Downgrade::with(DowngradeAction::Validate, version.into())
    }

    /// Starts a downgrade to `version`.
    pub fn enable(version: impl Into<String>) -> Downgrade {
        Downgrade::with(DowngradeAction::Enable, version.into())
    }

    /// Cancels the running downgrade.
    pub fn cancel() -> Downgrade {
        Downgrade::with(DowngradeAction::Cancel, String::new())
    }
}

impl UnaryRpc for Downgrade {
    type Request = DowngradeRequest;
    type Response = DowngradeResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Maintenance/Downgrade",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<DowngradeRequest, Error> {
        Ok(self.req)
    }
}
