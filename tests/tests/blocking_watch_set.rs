//! The blocking client's `WatchSet`: many watchers through one blocking iterator, against
//! both server versions.

use std::time::Duration;

use etcd_blocking::{Client, Config, Put, Watch};
use etcd_tests::{shared_endpoint, unique_prefix, EtcdVersion};

fn run(version: EtcdVersion) {
    let mut config = Config::from_endpoints([shared_endpoint(version).as_str()]).expect("config");
    config.default_timeout = Some(Duration::from_secs(10));
    let client = Client::with_config(config).expect("client");
    let p = unique_prefix("blocking_watch_set");
    let mut set = client.watch_set();
    let a = set.add(Watch::new(format!("{p}a"))).unwrap();
    let all = set.add(Watch::new(p.as_str()).prefix()).unwrap();
    assert_eq!(set.len(), 2);
    assert!(set.created_revision(a).unwrap() > 0);
    for i in 0..3 {
        client
            .put(Put::new(format!("{p}a"), format!("{i}")))
            .unwrap();
        client
            .put(Put::new(format!("{p}b"), format!("{i}")))
            .unwrap();
    }
    let (mut to_a, mut to_all) = (Vec::new(), Vec::new());
    while to_a.len() < 3 || to_all.len() < 6 {
        let (id, resp) = set.next().expect("watchers left");
        let keys = resp
            .unwrap()
            .events
            .into_iter()
            .map(|e| String::from_utf8(e.kv.unwrap().key.to_vec()).unwrap());
        if id == a {
            to_a.extend(keys);
        } else {
            assert_eq!(id, all);
            to_all.extend(keys);
        }
    }
    assert_eq!(to_a, vec![format!("{p}a"); 3]);
    assert_eq!(to_all.iter().filter(|k| k.ends_with('b')).count(), 3);
    set.cancel(a);
    set.cancel(all);
    assert!(set.is_empty());
    assert!(set.next().is_none(), "a set with no watcher ends");
}

#[test]
fn v3_4() {
    run(EtcdVersion::V3_4)
}

#[test]
fn v3_5() {
    run(EtcdVersion::V3_5)
}
