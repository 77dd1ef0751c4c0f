//! The pure retry policy (`retry::decide`, `retry::backoff`) checked case by case against the Go
//! client's behaviour (reference §2, §5, §6), with this crate's one deliberate change: a request
//! that never left the client is retried whatever its class.

use std::time::Duration;

use etcd_proto_core::retry::{backoff, decide, Attempt, Decision, MAX_AUTH_RETRIES};
use etcd_proto_core::rng::Rng;
use etcd_proto_core::rpc::RetryClass::{self, NonRepeatable, Repeatable};
use etcd_proto_core::EtcdErrorKind as K;
use etcd_proto_core::{Code, Error, Status};

const RETRY: Decision = Decision::Retry {
    refresh_token: false,
};
const REFRESH: Decision = Decision::Retry {
    refresh_token: true,
};
const FAIL: Decision = Decision::Fail;

/// A first attempt that failed, with room for many more.
fn attempt(class: RetryClass) -> Attempt {
    Attempt {
        class,
        attempts: 1,
        max_attempts: 100,
        endpoints: 3,
        has_credentials: false,
        auth_retries: 0,
    }
}

/// The error the core builds from a status carrying this etcd message (with the code the
/// server sends for it).
fn etcd(kind: K) -> Error {
    let err = Error::from_status(Status::new(kind.canonical_code(), kind.message()));
    assert_eq!(err.etcd_kind(), Some(kind), "{err:?}");
    err
}

fn transport(request_sent: bool) -> Error {
    Error::Transport {
        message: "connection reset".into(),
        request_sent,
    }
}

fn status(code: Code, message: &str) -> Error {
    let err = Error::from_status(Status::new(code, message));
    assert!(matches!(err, Error::Status(_)), "{err:?}");
    err
}

/// Checks one error against both classes.
#[track_caller]
fn check(base: Attempt, error: &Error, repeatable: Decision, non_repeatable: Decision) {
    let r = Attempt {
        class: Repeatable,
        ..base
    };
    let n = Attempt {
        class: NonRepeatable,
        ..base
    };
    assert_eq!(decide(r, error), repeatable, "Repeatable, {error:?}, {r:?}");
    assert_eq!(
        decide(n, error),
        non_repeatable,
        "NonRepeatable, {error:?}, {n:?}"
    );
}

#[test]
fn request_that_never_left_is_retried_whatever_its_class() {
    check(attempt(Repeatable), &transport(false), RETRY, RETRY);
    // Also with a single endpoint and with credentials: nothing about the token.
    let mut a = attempt(Repeatable);
    a.endpoints = 1;
    a.has_credentials = true;
    check(a, &transport(false), RETRY, RETRY);
}

#[test]
fn request_that_may_have_arrived_is_retried_only_when_repeatable() {
    check(attempt(Repeatable), &transport(true), RETRY, FAIL);
    let mut a = attempt(Repeatable);
    a.endpoints = 1;
    check(a, &transport(true), RETRY, FAIL);
}

#[test]
fn unavailable_status_is_retried_only_when_repeatable() {
    let err = status(Code::Unavailable, "connection closed before server preface");
    check(attempt(Repeatable), &err, RETRY, FAIL);
    let err = status(Code::Unavailable, "");
    check(attempt(Repeatable), &err, RETRY, FAIL);
}

#[test]
fn unavailable_etcd_errors_are_retried_only_when_repeatable() {
    for kind in [
        K::NoLeader,
        K::LeaderChanged,
        K::Timeout,
        K::TimeoutDueToLeaderFail,
        K::TimeoutDueToConnectionLost,
    ] {
        assert_eq!(kind.canonical_code(), Code::Unavailable, "{kind:?}");
        check(attempt(Repeatable), &etcd(kind), RETRY, FAIL);
        // The decision follows the known message, not the code the server happened to send.
        let odd_code = Error::from_status(Status::new(Code::Unknown, kind.message()));
        check(attempt(Repeatable), &odd_code, RETRY, FAIL);
    }
}

#[test]
fn etcd_errors_that_will_not_go_away_are_never_retried() {
    for kind in [
        K::Compacted,
        K::EmptyKey,
        K::PermissionDenied,
        K::FutureRev,
        K::AuthFailed,
    ] {
        assert_ne!(kind.canonical_code(), Code::Unavailable, "{kind:?}");
        check(attempt(Repeatable), &etcd(kind), FAIL, FAIL);
        // Even when the server sends them with code Unavailable.
        let unavailable = Error::from_status(Status::new(Code::Unavailable, kind.message()));
        check(attempt(Repeatable), &unavailable, FAIL, FAIL);
    }
}

#[test]
fn learner_refusal_is_retried_only_with_other_members() {
    let err = etcd(K::NotSupportedForLearner);
    // Several endpoints: another member may serve it, whatever the class (the learner did
    // nothing).
    let mut a = attempt(Repeatable);
    a.endpoints = 3;
    check(a, &err, RETRY, RETRY);
    a.endpoints = 2;
    check(a, &err, RETRY, RETRY);
    // One endpoint: the same learner would refuse again (reference §6 "Learners").
    a.endpoints = 1;
    check(a, &err, FAIL, FAIL);
}

#[test]
fn rejected_token_is_refreshed_with_credentials() {
    for kind in [K::InvalidAuthToken, K::AuthOldRevision] {
        let err = etcd(kind);
        let mut a = attempt(Repeatable);
        a.has_credentials = true;
        // Found before the request is applied: safe for writes too.
        check(a, &err, REFRESH, REFRESH);
        a.endpoints = 1;
        check(a, &err, REFRESH, REFRESH);
        // Up to the last allowed re-authentication.
        a.auth_retries = MAX_AUTH_RETRIES - 1;
        check(a, &err, REFRESH, REFRESH);
    }
}

#[test]
fn rejected_token_without_credentials_fails() {
    // No credentials: there is no token to refresh, the same request meets the same error.
    for kind in [K::InvalidAuthToken, K::AuthOldRevision] {
        let err = etcd(kind);
        let a = attempt(Repeatable);
        assert!(!a.has_credentials);
        check(a, &err, FAIL, FAIL);
    }
}

#[test]
fn user_empty_refreshes_only_with_credentials() {
    let err = etcd(K::UserEmpty);
    let mut a = attempt(Repeatable);
    a.has_credentials = true;
    check(a, &err, REFRESH, REFRESH);
    // Without credentials it is an ordinary InvalidArgument error.
    a.has_credentials = false;
    check(a, &err, FAIL, FAIL);
}

#[test]
fn auth_retries_exhausted() {
    for kind in [K::InvalidAuthToken, K::AuthOldRevision, K::UserEmpty] {
        let err = etcd(kind);
        let mut a = attempt(Repeatable);
        a.has_credentials = true;
        a.auth_retries = MAX_AUTH_RETRIES;
        check(a, &err, FAIL, FAIL);
        a.auth_retries = MAX_AUTH_RETRIES + 5;
        check(a, &err, FAIL, FAIL);
    }
}

#[test]
fn attempts_exhausted_fail_everything() {
    let mut a = attempt(Repeatable);
    a.has_credentials = true;
    a.max_attempts = 5;
    a.attempts = 5;
    for err in [
        transport(false),
        transport(true),
        status(Code::Unavailable, "x"),
        etcd(K::NoLeader),
        etcd(K::NotSupportedForLearner),
        etcd(K::InvalidAuthToken),
    ] {
        check(a, &err, FAIL, FAIL);
    }
    // One attempt short of the limit still retries.
    a.attempts = 4;
    check(a, &transport(false), RETRY, RETRY);
    check(a, &etcd(K::NoLeader), RETRY, FAIL);
    // A single-attempt configuration never retries.
    let mut one = attempt(Repeatable);
    one.max_attempts = 1;
    check(one, &transport(false), FAIL, FAIL);
}

#[test]
fn other_status_codes_are_not_retried() {
    for code in [
        Code::Internal,
        Code::Unknown,
        Code::InvalidArgument,
        Code::Unimplemented,
        Code::PermissionDenied,
    ] {
        let err = status(code, "something broke");
        check(attempt(Repeatable), &err, FAIL, FAIL);
    }
    // Local and protocol errors neither.
    check(
        attempt(Repeatable),
        &Error::Protocol("bad frame".into()),
        FAIL,
        FAIL,
    );
}

const WAIT: Duration = Duration::from_millis(25);
const JITTER: f64 = 0.1;

fn in_jitter_range(d: Duration) -> bool {
    d >= WAIT.mul_f64(1.0 - JITTER) && d <= WAIT.mul_f64(1.0 + JITTER)
}

#[test]
fn backoff_with_one_endpoint_waits_before_every_retry() {
    let mut rng = Rng::new(7);
    let mut seen = Vec::new();
    for attempt in 1..=200 {
        let d = backoff(attempt, 1, WAIT, JITTER, &mut rng);
        assert!(in_jitter_range(d), "attempt {attempt}: {d:?}");
        seen.push(d);
    }
    // It is jittered, not a constant.
    seen.sort();
    seen.dedup();
    assert!(seen.len() > 100, "only {} distinct pauses", seen.len());
    // Both halves of the range are used.
    assert!(seen.iter().any(|d| *d < WAIT) && seen.iter().any(|d| *d > WAIT));
}

#[test]
fn backoff_with_a_quorum_waits_only_every_quorum_th_retry() {
    let mut rng = Rng::new(7);
    // 3 endpoints: quorum 2, only even attempts wait.
    for attempt in 1..=100 {
        let d = backoff(attempt, 3, WAIT, JITTER, &mut rng);
        if attempt % 2 == 0 {
            assert!(in_jitter_range(d), "attempt {attempt}: {d:?}");
        } else {
            assert_eq!(d, Duration::ZERO, "attempt {attempt}");
        }
    }
    // 2 endpoints: quorum 2 as well; 5 endpoints: quorum 3.
    for attempt in 1..=30 {
        let two = backoff(attempt, 2, WAIT, JITTER, &mut rng);
        assert_eq!(
            two.is_zero(),
            attempt % 2 != 0,
            "2 endpoints, attempt {attempt}"
        );
        let five = backoff(attempt, 5, WAIT, JITTER, &mut rng);
        assert_eq!(
            five.is_zero(),
            attempt % 3 != 0,
            "5 endpoints, attempt {attempt}"
        );
    }
}

#[test]
fn backoff_never_waits_before_the_first_attempt() {
    let mut rng = Rng::new(1);
    for endpoints in [0, 1, 2, 3, 5, 7] {
        assert_eq!(
            backoff(0, endpoints, WAIT, JITTER, &mut rng),
            Duration::ZERO
        );
    }
}

#[test]
fn backoff_is_deterministic_for_a_seed() {
    let run = |seed: u64| -> Vec<Duration> {
        let mut rng = Rng::new(seed);
        (1..=50)
            .map(|a| backoff(a, 1, WAIT, JITTER, &mut rng))
            .collect()
    };
    assert_eq!(run(42), run(42));
    assert_eq!(run(0x5EED), run(0x5EED));
    assert_ne!(run(42), run(43), "different seeds, different jitter");
}

#[test]
fn backoff_without_jitter_is_exact_and_jitter_is_clamped() {
    let mut rng = Rng::new(3);
    for attempt in 1..=10 {
        assert_eq!(backoff(attempt, 1, WAIT, 0.0, &mut rng), WAIT);
    }
    // A jitter above 1 is treated as 1: never negative, at most twice the pause.
    for attempt in 1..=100 {
        let d = backoff(attempt, 1, WAIT, 5.0, &mut rng);
        assert!(d <= WAIT * 2, "{d:?}");
    }
}
