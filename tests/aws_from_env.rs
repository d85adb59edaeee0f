//! `S3Store::from_env` and `SqsQueue::from_env` read the default credential
//! chain, `AWS_ENDPOINT_URL` and `REELAY_S3_PATH_STYLE` from the environment.
//! One test in its own binary: it sets this process's environment, which no
//! other thread reads meanwhile.

mod common;

use std::time::Duration;

use common::moto::MotoServer;
use reelay::adapters::s3::{S3Options, S3Store};
use reelay::adapters::sqs::SqsQueue;
use reelay::ports::{Metadata, ObjectStore, PutCondition, Queue};

#[tokio::test]
async fn adapters_configured_from_the_environment_reach_moto() {
    let moto = MotoServer::start();
    for (k, v) in moto.env() {
        // SAFETY: the only test in this binary; no other thread reads the
        // environment while it is set.
        unsafe { std::env::set_var(k, v) };
    }
    moto.create_bucket("from-env").await;
    let (url, _) = moto.create_queue("from-env", &[]).await;

    let opts = S3Options::from_env().unwrap();
    assert!(opts.path_style, "REELAY_S3_PATH_STYLE=true is read");
    assert_eq!(opts.endpoint, None);
    let s = S3Store::from_env("from-env", opts).await.unwrap();
    s.put_bytes(
        "k",
        b"v",
        "text/plain",
        &Metadata::new(),
        PutCondition::Overwrite,
    )
    .await
    .unwrap();
    assert_eq!(s.get_bytes("k").await.unwrap().0, b"v");

    let q = SqsQueue::from_env(&url).await;
    q.send("hello").await.unwrap();
    let got = q
        .receive(1, Duration::from_secs(30), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(got[0].body, "hello");

    // The R2 endpoint option: REELAY_S3_ENDPOINT overrides the endpoint.
    unsafe {
        std::env::remove_var("AWS_ENDPOINT_URL");
        std::env::set_var("REELAY_S3_ENDPOINT", moto.endpoint());
    }
    let opts = S3Options::from_env().unwrap();
    assert_eq!(opts.endpoint.as_deref(), Some(moto.endpoint().as_str()));
    let r2 = S3Store::from_env("from-env", opts).await.unwrap();
    assert_eq!(
        r2.client().config().region().map(|r| r.as_ref()),
        Some("auto")
    );
    assert_eq!(r2.get_bytes("k").await.unwrap().0, b"v");
}
