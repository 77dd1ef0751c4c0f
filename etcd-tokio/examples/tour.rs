//! A short tour of the client: put, prefix get, a transaction.
//!
//! `cargo run -p etcd-tokio --example tour -- http://127.0.0.1:2379`

use std::time::Duration;

use etcd_tokio::{Client, Compare, CompareOp, Delete, Get, Put, Txn};

fn show(label: &str, bytes: &[u8]) -> String {
    format!("{label}={}", String::from_utf8_lossy(bytes))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:2379".to_string());
    println!("connecting to {endpoint}");
    let client = Client::connect([endpoint.as_str()])?.with_timeout(Duration::from_secs(5));

    for (key, value) in [
        ("tour/fruit/apple", "red"),
        ("tour/fruit/banana", "yellow"),
        ("tour/veg/leek", "green"),
    ] {
        let resp = client.put(Put::new(key, value)).await?;
        let rev = resp.header.map(|h| h.revision).unwrap_or_default();
        println!("put {key} = {value}  (revision {rev})");
    }

    let resp = client.get(Get::new("tour/fruit/").prefix()).await?;
    println!("get prefix tour/fruit/ -> {} keys", resp.count);
    for kv in &resp.kvs {
        println!(
            "  {} {}  (version {}, mod revision {})",
            show("key", &kv.key),
            show("value", &kv.value),
            kv.version,
            kv.mod_revision
        );
    }

    // Compare-and-swap: only turn the apple green if it is still red.
    let txn = Txn::new()
        .when([Compare::value("tour/fruit/apple", CompareOp::Equal, "red")])
        .and_then([Put::new("tour/fruit/apple", "green")])
        .or_else([Get::new("tour/fruit/apple")]);
    let resp = client.txn(txn.clone()).await?;
    println!(
        "txn: if apple == red then apple := green -> succeeded = {}",
        resp.succeeded
    );
    let resp = client.txn(txn).await?;
    println!(
        "same txn again -> succeeded = {} (apple is no longer red)",
        resp.succeeded
    );

    let resp = client.get("tour/fruit/apple").await?;
    if let Some(kv) = resp.kvs.first() {
        println!("apple is now {}", String::from_utf8_lossy(&kv.value));
    }

    let resp = client.delete(Delete::new("tour/").prefix()).await?;
    println!("deleted {} keys under tour/", resp.deleted);
    Ok(())
}
