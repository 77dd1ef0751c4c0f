//! KV requests with every option of the Go client: [`Get`], [`Put`], [`Delete`], [`Txn`] with
//! [`Compare`], and [`Compact`]. Builders mirror the Go `OpOption`s; combinations Go panics on
//! are reported as [`InvalidRequest`] when the request is sent.

use bytes::Bytes;
use etcd_proto::etcdserverpb::{
    compare, range_request, request_op, CompactionRequest, CompactionResponse,
    Compare as PbCompare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};

use super::{IntoBytes, Method, RetryClass, UnaryRpc};
use crate::error::{Error, InvalidRequest};

/// `range_end` for a prefix scan: the key with its last byte below `0xff` incremented and the
/// bytes after it dropped; `"\0"` (to the end of the keyspace) when every byte is `0xff` or the
/// prefix is empty.
pub fn prefix_range_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            *end.last_mut().expect("non-empty") += 1;
            return Bytes::from(end);
        }
        end.pop();
    }
    Bytes::from_static(b"\0")
}

/// How the end of a key range is chosen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum End {
    /// Just the key.
    #[default]
    Single,
    /// `[key, end)`.
    Range(Bytes),
    /// Every key with the key as prefix (empty key: the whole keyspace).
    Prefix,
    /// Every key `>= key` (empty key: the whole keyspace).
    FromKey,
}

/// Key range shared by Get and Delete, resolving Go's rules for prefix / from-key / range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyRange {
    key: Bytes,
    pub(crate) end: End,
    prefix_set: bool,
    from_key_set: bool,
}

impl KeyRange {
    pub(crate) fn new(key: Bytes) -> Self {
        KeyRange {
            key,
            ..Default::default()
        }
    }

    pub(crate) fn prefix(&mut self) {
        self.end = End::Prefix;
        self.prefix_set = true;
    }

    pub(crate) fn set_from_key(&mut self) {
        self.end = End::FromKey;
        self.from_key_set = true;
    }

    /// Resolves into `(key, range_end)`.
    pub(crate) fn resolve(self) -> Result<(Bytes, Bytes), Error> {
        if self.prefix_set && self.from_key_set {
            return Err(InvalidRequest::PrefixAndFromKey.into());
        }
        let zero = || Bytes::from_static(b"\0");
        Ok(match self.end {
            End::Single => (self.key, Bytes::new()),
            End::Range(end) => (self.key, end),
            End::Prefix if self.key.is_empty() => (zero(), zero()),
            End::Prefix => {
                let end = prefix_range_end(&self.key);
                (self.key, end)
            }
            End::FromKey if self.key.is_empty() => (zero(), zero()),
            End::FromKey => (self.key, zero()),
        })
    }
}

/// What a range is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortTarget {
    /// By key.
    Key,
    /// By version.
    Version,
    /// By create revision.
    CreateRevision,
    /// By mod revision.
    ModRevision,
    /// By value.
    Value,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortOrder {
    /// No explicit order (results come key-ascending).
    None,
    /// Lowest first.
    Ascend,
    /// Highest first.
    Descend,
}

impl SortTarget {
    fn wire(self) -> range_request::SortTarget {
        match self {
            SortTarget::Key => range_request::SortTarget::Key,
            SortTarget::Version => range_request::SortTarget::Version,
            SortTarget::CreateRevision => range_request::SortTarget::Create,
            SortTarget::ModRevision => range_request::SortTarget::Mod,
            SortTarget::Value => range_request::SortTarget::Value,
        }
    }
}

impl SortOrder {
    fn wire(self) -> range_request::SortOrder {
        match self {
            SortOrder::None => range_request::SortOrder::None,
            SortOrder::Ascend => range_request::SortOrder::Ascend,
            SortOrder::Descend => range_request::SortOrder::Descend,
        }
    }
}

/// A read of one key or a range (`KV/Range`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Get {
    range: KeyRange,
    limit: i64,
    revision: i64,
    sort: Option<(SortTarget, SortOrder)>,
    serializable: bool,
    keys_only: bool,
    count_only: bool,
    min_mod_revision: i64,
    max_mod_revision: i64,
    min_create_revision: i64,
    max_create_revision: i64,
}

impl Get {
    /// Reads `key`.
    pub fn new(key: impl IntoBytes) -> Get {
        Get {
            range: KeyRange::new(key.into_bytes()),
            limit: 0,
            revision: 0,
            sort: None,
            serializable: false,
            keys_only: false,
            count_only: false,
            min_mod_revision: 0,
            max_mod_revision: 0,
            min_create_revision: 0,
            max_create_revision: 0,
        }
    }

    /// Reads every key that starts with the key (empty key: the whole keyspace).
    pub fn prefix(mut self) -> Self {
        self.range.prefix();
        self
    }

    /// Reads every key `>=` the key (empty key: the whole keyspace).
    pub fn from_key(mut self) -> Self {
        self.range.set_from_key();
        self
    }

    /// Reads `[key, end)`.
    pub fn range_end(mut self, end: impl IntoBytes) -> Self {
        self.range.end = End::Range(end.into_bytes());
        self
    }

    /// At most `limit` keys (0 = no limit); `more` in the response tells if there were more.
    pub fn limit(mut self, limit: i64) -> Self {
        self.limit = limit;
        self
    }

    /// Reads at a past revision (<= 0 = latest).
    pub fn revision(mut self, revision: i64) -> Self {
        self.revision = revision;
        self
    }

    /// Sorts the result. As in Go, (Key, Ascend) is sent as (Key, None): the server returns
    /// keys ascending anyway and can then stop early at the limit.
    pub fn sort(mut self, target: SortTarget, order: SortOrder) -> Self {
        self.sort = Some((target, order));
        self
    }

    /// Member-local read: faster, possibly stale, works without quorum.
    pub fn serializable(mut self) -> Self {
        self.serializable = true;
        self
    }

    /// Keys without values.
    pub fn keys_only(mut self) -> Self {
        self.keys_only = true;
        self
    }

    /// Only the count.
    pub fn count_only(mut self) -> Self {
        self.count_only = true;
        self
    }

    /// Drops keys modified before `rev`.
    pub fn min_mod_revision(mut self, rev: i64) -> Self {
        self.min_mod_revision = rev;
        self
    }

    /// Drops keys modified after `rev`.
    pub fn max_mod_revision(mut self, rev: i64) -> Self {
        self.max_mod_revision = rev;
        self
    }

    /// Drops keys created before `rev`.
    pub fn min_create_revision(mut self, rev: i64) -> Self {
        self.min_create_revision = rev;
        self
    }

    /// Drops keys created after `rev`.
    pub fn max_create_revision(mut self, rev: i64) -> Self {
        self.max_create_revision = rev;
        self
    }

    fn first_or_last(self, target: SortTarget, order: SortOrder) -> Self {
        self.prefix().sort(target, order).limit(1)
    }

    /// The key under the prefix created first.
    pub fn first_create(self) -> Self {
        self.first_or_last(SortTarget::CreateRevision, SortOrder::Ascend)
    }

    /// The key under the prefix created last.
    pub fn last_create(self) -> Self {
        self.first_or_last(SortTarget::CreateRevision, SortOrder::Descend)
    }

    /// The lexically first key under the prefix.
    pub fn first_key(self) -> Self {
        self.first_or_last(SortTarget::Key, SortOrder::Ascend)
    }

    /// The lexically last key under the prefix.
    pub fn last_key(self) -> Self {
        self.first_or_last(SortTarget::Key, SortOrder::Descend)
    }

    /// The key under the prefix modified first.
    pub fn first_rev(self) -> Self {
        self.first_or_last(SortTarget::ModRevision, SortOrder::Ascend)
    }

    /// The key under the prefix modified last.
    pub fn last_rev(self) -> Self {
        self.first_or_last(SortTarget::ModRevision, SortOrder::Descend)
    }

    /// The wire request.
    pub fn build(self) -> Result<RangeRequest, Error> {
        let (key, range_end) = self.range.resolve()?;
        let (target, order) = match self.sort {
            Some((SortTarget::Key, SortOrder::Ascend)) => (SortTarget::Key, SortOrder::None),
            Some(sort) => sort,
            None => (SortTarget::Key, SortOrder::None),
        };
        Ok(RangeRequest {
            key,
            range_end,
            limit: self.limit,
            revision: self.revision,
            sort_order: order.wire() as i32,
            sort_target: target.wire() as i32,
            serializable: self.serializable,
            keys_only: self.keys_only,
            count_only: self.count_only,
            min_mod_revision: self.min_mod_revision,
            max_mod_revision: self.max_mod_revision,
            min_create_revision: self.min_create_revision,
            max_create_revision: self.max_create_revision,
        })
    }
}

impl UnaryRpc for Get {
    type Request = RangeRequest;
    type Response = RangeResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.KV/Range",
        retry: RetryClass::Repeatable,
    };
    fn into_request(self) -> Result<RangeRequest, Error> {
        self.build()
    }
}

/// A write of one key (`KV/Put`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Put {
    req: PutRequest,
}

impl Put {
    /// Writes `value` to `key`.
    pub fn new(key: impl IntoBytes, value: impl IntoBytes) -> Put {
        Put {
            req: PutRequest {
                key: key.into_bytes(),
                value: value.into_bytes(),
                ..Default::default()
            },
        }
    }

    /// Attaches the key to a lease.
    pub fn lease(mut self, lease: i64) -> Self {
        self.req.lease = lease;
        self
    }

    /// Returns the previous key-value.
    pub fn prev_kv(mut self) -> Self {
        self.req.prev_kv = true;
        self
    }

    /// Keeps the current value (the value must be empty; the key must exist).
    pub fn ignore_value(mut self) -> Self {
        self.req.ignore_value = true;
        self
    }

    /// Keeps the current lease (no lease may be given; the key must exist).
    pub fn ignore_lease(mut self) -> Self {
        self.req.ignore_lease = true;
        self
    }

    /// The wire request.
    pub fn build(self) -> Result<PutRequest, Error> {
        Ok(self.req)
    }
}

impl UnaryRpc for Put {
    type Request = PutRequest;
    type Response = PutResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.KV/Put",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<PutRequest, Error> {
        self.build()
    }
}

/// A delete of one key or a range (`KV/DeleteRange`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Delete {
    range: KeyRange,
    prev_kv: bool,
}

impl Delete {
    /// Deletes `key`.
    pub fn new(key: impl IntoBytes) -> Delete {
        Delete {
            range: KeyRange::new(key.into_bytes()),
            prev_kv: false,
        }
    }

    /// Deletes every key with the key as prefix (empty key: everything).
    pub fn prefix(mut self) -> Self {
        self.range.prefix();
        self
    }

    /// Deletes every key `>=` the key (empty key: everything).
    pub fn from_key(mut self) -> Self {
        self.range.set_from_key();
        self
    }

    /// Deletes `[key, end)`.
    pub fn range_end(mut self, end: impl IntoBytes) -> Self {
        self.range.end = End::Range(end.into_bytes());
        self
    }

    /// Returns the deleted key-values.
    pub fn prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    /// The wire request.
    pub fn build(self) -> Result<DeleteRangeRequest, Error> {
        let (key, range_end) = self.range.resolve()?;
        Ok(DeleteRangeRequest {
            key,
            range_end,
            prev_kv: self.prev_kv,
        })
    }
}

impl UnaryRpc for Delete {
    type Request = DeleteRangeRequest;
    type Response = DeleteRangeResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.KV/DeleteRange",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<DeleteRangeRequest, Error> {
        self.build()
    }
}

/// Compaction of the revision history (`KV/Compact`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Compact {
    req: CompactionRequest,
}

impl Compact {
    /// Compacts history up to `revision`.
    pub fn new(revision: i64) -> Compact {
        Compact {
            req: CompactionRequest {
                revision,
                physical: false,
            },
        }
    }

    /// Waits until the compaction is physically applied before answering.
    pub fn physical(mut self) -> Self {
        self.req.physical = true;
        self
    }
}

impl UnaryRpc for Compact {
    type Request = CompactionRequest;
    type Response = CompactionResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.KV/Compact",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<CompactionRequest, Error> {
        Ok(self.req)
    }
}

/// Comparison operator of a [`Compare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `>`
    Greater,
    /// `<`
    Less,
}

impl CompareOp {
    fn wire(self) -> compare::CompareResult {
        match self {
            CompareOp::Equal => compare::CompareResult::Equal,
            CompareOp::NotEqual => compare::CompareResult::NotEqual,
            CompareOp::Greater => compare::CompareResult::Greater,
            CompareOp::Less => compare::CompareResult::Less,
        }
    }
}

/// A transaction guard on a key (or, with [`Compare::with_range`] / [`Compare::with_prefix`],
/// on every key of a range).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Compare {
    pb: PbCompare,
    prefix: bool,
}

impl Compare {
    fn new(
        key: impl IntoBytes,
        target: compare::CompareTarget,
        op: CompareOp,
        operand: compare::TargetUnion,
    ) -> Compare {
        Compare {
            pb: PbCompare {
                result: op.wire() as i32,
                target: target as i32,
                key: key.into_bytes(),
                range_end: Bytes::new(),
                target_union: Some(operand),
            },
            prefix: false,
        }
    }

    /// Compares the value (lexically, as bytes).
    pub fn value(key: impl IntoBytes, op: CompareOp, value: impl IntoBytes) -> Compare {
        Compare::new(
            key,
            compare::CompareTarget::Value,
            op,
            compare::TargetUnion::Value(value.into_bytes()),
        )
    }

    /// Compares the version (0 = the key does not exist).
    pub fn version(key: impl IntoBytes, op: CompareOp, version: i64) -> Compare {
        Compare::new(
            key,
            compare::CompareTarget::Version,
            op,
            compare::TargetUnion::Version(version),
        )
    }

    /// Compares the create revision.
    pub fn create_revision(key: impl IntoBytes, op: CompareOp, revision: i64) -> Compare {
        Compare::new(
            key,
            compare::CompareTarget::Create,
            op,
            compare::TargetUnion::CreateRevision(revision),
        )
    }

    /// Compares the mod revision.
    pub fn mod_revision(key: impl IntoBytes, op: CompareOp, revision: i64) -> Compare {
        Compare::new(
            key,
            compare::CompareTarget::Mod,
            op,
            compare::TargetUnion::ModRevision(revision),
        )
    }

    /// Compares the attached lease ID (0 = none).
    pub fn lease(key: impl IntoBytes, op: CompareOp, lease: i64) -> Compare {
        Compare::new(
            key,
            compare::CompareTarget::Lease,
            op,
            compare::TargetUnion::Lease(lease),
        )
    }

    /// Applies the comparison to every key in `[key, end)`; all must satisfy it.
    pub fn with_range(mut self, end: impl IntoBytes) -> Self {
        self.pb.range_end = end.into_bytes();
        self.prefix = false;
        self
    }

    /// Applies the comparison to every key under the key as prefix.
    pub fn with_prefix(mut self) -> Self {
        self.prefix = true;
        self
    }

    fn build(mut self) -> PbCompare {
        if self.prefix {
            self.pb.range_end = prefix_range_end(&self.pb.key);
        }
        self.pb
    }
}

/// One operation inside a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxnOp {
    /// A read.
    Get(Get),
    /// A write.
    Put(Put),
    /// A delete.
    Delete(Delete),
    /// A nested transaction.
    Txn(Txn),
}

impl From<Get> for TxnOp {
    fn from(op: Get) -> Self {
        TxnOp::Get(op)
    }
}
impl From<Put> for TxnOp {
    fn from(op: Put) -> Self {
        TxnOp::Put(op)
    }
}
impl From<Delete> for TxnOp {
    fn from(op: Delete) -> Self {
        TxnOp::Delete(op)
    }
}
impl From<Txn> for TxnOp {
    fn from(op: Txn) -> Self {
        TxnOp::Txn(op)
    }
}

impl TxnOp {
    fn build(self) -> Result<RequestOp, Error> {
        let request = match self {
            TxnOp::Get(op) => request_op::Request::RequestRange(op.build()?),
            TxnOp::Put(op) => request_op::Request::RequestPut(op.build()?),
            TxnOp::Delete(op) => request_op::Request::RequestDeleteRange(op.build()?),
            TxnOp::Txn(op) => request_op::Request::RequestTxn(op.build()?),
        };
        Ok(RequestOp {
            request: Some(request),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TxnStage {
    Start,
    When,
    Then,
    Else,
}

/// A transaction (`KV/Txn`): if every compare holds, run the `and_then` ops, else the
/// `or_else` ops. Like Go's `If/Then/Else`: each part at most once and in that order (misuse is
/// a typed error when sent); `when(..).or_else(..)` without `and_then` is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[must_use]
pub struct Txn {
    compare: Vec<Compare>,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
    stage: Option<TxnStage>,
    misuse: Option<&'static str>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Txn {
        Txn::default()
    }

    fn enter(&mut self, stage: TxnStage, twice: &'static str, late: &'static str) {
        if self.misuse.is_some() {
            return;
        }
        let current = self.stage.unwrap_or(TxnStage::Start);
        if current == stage {
            self.misuse = Some(twice);
        } else if current > stage {
            self.misuse = Some(late);
        }
        self.stage = Some(stage);
    }

    /// The guards (AND-ed).
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        let late = match self.stage {
            Some(TxnStage::Else) => "cannot call when after or_else",
            _ => "cannot call when after and_then",
        };
        self.enter(TxnStage::When, "cannot call when twice", late);
        self.compare.extend(compares);
        self
    }

    /// Ops run when every guard holds.
    pub fn and_then<O: Into<TxnOp>>(mut self, ops: impl IntoIterator<Item = O>) -> Self {
        self.enter(
            TxnStage::Then,
            "cannot call and_then twice",
            "cannot call and_then after or_else",
        );
        self.success.extend(ops.into_iter().map(Into::into));
        self
    }

    /// Ops run otherwise.
    pub fn or_else<O: Into<TxnOp>>(mut self, ops: impl IntoIterator<Item = O>) -> Self {
        self.enter(
            TxnStage::Else,
            "cannot call or_else twice",
            "cannot call or_else twice",
        );
        self.failure.extend(ops.into_iter().map(Into::into));
        self
    }

    /// The wire request.
    pub fn build(self) -> Result<TxnRequest, Error> {
        if let Some(misuse) = self.misuse {
            return Err(InvalidRequest::TxnMisuse(misuse).into());
        }
        Ok(TxnRequest {
            compare: self.compare.into_iter().map(Compare::build).collect(),
            success: self
                .success
                .into_iter()
                .map(TxnOp::build)
                .collect::<Result<_, _>>()?,
            failure: self
                .failure
                .into_iter()
                .map(TxnOp::build)
                .collect::<Result<_, _>>()?,
        })
    }
}

impl UnaryRpc for Txn {
    type Request = TxnRequest;
    type Response = TxnResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.KV/Txn",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<TxnRequest, Error> {
        self.build()
    }
}

impl<K: IntoBytes> From<K> for Get {
    fn from(key: K) -> Get {
        Get::new(key)
    }
}

impl<K: IntoBytes> From<K> for Delete {
    fn from(key: K) -> Delete {
        Delete::new(key)
    }
}

impl<K: IntoBytes, V: IntoBytes> From<(K, V)> for Put {
    fn from((key, value): (K, V)) -> Put {
        Put::new(key, value)
    }
}

impl From<i64> for Compact {
    fn from(revision: i64) -> Compact {
        Compact::new(revision)
    }
}
