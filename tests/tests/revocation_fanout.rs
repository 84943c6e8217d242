//! The revocation stream with many hosts and with slow ones, over real mTLS sockets:
//! every one of 200 watchers, each on its own connection, receives a revocation; and a
//! watcher that stops reading while more revocations are made than any buffer of the
//! daemon would hold (the broadcast channel had 1024 places) gets every one of them, in
//! order, once it reads again. `fanout-bench` measures the same at 10,000 hosts.

use std::collections::BTreeSet;
use std::time::Duration;

use breakglass_cli::connect;
use breakglass_cli::settings::Target;
use breakglass_proto::v1::revocations_client::RevocationsClient;
use breakglass_proto::v1::revoke_request::Target as Selector;
use breakglass_proto::v1::{RevocationNotice, WatchRevocationsRequest};
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::revocation::{self, certificate_request, revoke_request};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, PrivateKey};
use tonic::Streaming;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Longest wait for one message (a hang guard, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(60);

/// The next notice that is not a heartbeat.
async fn next_revocation(s: &mut Streaming<RevocationNotice>) -> RevocationNotice {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let n = s
                .message()
                .await
                .expect("the stream carries on")
                .expect("the stream is open");
            if !n.heartbeat {
                return n;
            }
        }
    })
    .await
    .expect("a revocation notice within the wait")
}

/// Opens a stream from sequence 0 and waits for its first heartbeat (it is live then).
async fn watch(
    client: &mut RevocationsClient<breakglass_cli::connect::Channel>,
) -> Streaming<RevocationNotice> {
    let mut s = client
        .watch_revocations(WatchRevocationsRequest { from_version: 0 })
        .await
        .expect("stream opened")
        .into_inner();
    let first = tokio::time::timeout(PATIENCE, s.message())
        .await
        .expect("a first message")
        .expect("stream open")
        .expect("a message");
    assert!(first.heartbeat, "a fresh daemon has no backlog: {first:?}");
    s
}

/// Grants for `count` fresh keys, issued to the sample SRE; their ids.
async fn issue_many(d: &TestDaemon, count: usize) -> Vec<String> {
    let mut client = connect::client(&d.target("sre")).unwrap();
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
        let line = key.public_key().to_openssh().unwrap();
        let r = client
            .request_certificate(certificate_request(
                &line,
                "alice",
                "db-7",
                600,
                &format!("INC-7 fan-out test grant {i}"),
            ))
            .await
            .expect("certificate issued")
            .into_inner();
        ids.push(r.grant_id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_watchers_each_on_its_own_connection_all_receive_a_revocation() {
    let d = revocation::daemon().await;
    let host = d.target("host");
    let mut streams = Vec::new();
    // One after the other: at most max_handshakes_per_source handshakes of one
    // address may be in flight, and all of these come from 127.0.0.1.
    for _ in 0..200 {
        let mut client = RevocationsClient::new(connect::channel(&host).unwrap());
        streams.push(watch(&mut client).await);
    }
    let grant = issue_many(&d, 1).await.remove(0);
    let revoked = revocation_client(&d.target("sre"))
        .revoke(revoke_request(
            Selector::GrantId(grant.clone()),
            "INC-7 fan-out",
        ))
        .await
        .expect("revoked")
        .into_inner();
    let index = revoked.revoked[0].audit_index;
    let mut readers = tokio::task::JoinSet::new();
    for mut s in streams {
        readers.spawn(async move { next_revocation(&mut s).await });
    }
    let mut received = 0;
    while let Some(n) = readers.join_next().await {
        let n = n.expect("reader task");
        assert_eq!(n.grant_id, grant);
        assert_eq!(n.version, index);
        assert_eq!(n.reason, "INC-7 fan-out");
        received += 1;
    }
    assert_eq!(received, 200);
}

fn revocation_client(t: &Target) -> RevocationsClient<breakglass_cli::connect::Channel> {
    RevocationsClient::new(connect::channel(t).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_that_stops_reading_gets_every_revocation_in_order_when_it_reads_again() {
    let d = revocation::daemon().await;
    // The host's connection lets the daemon send only about a kilobyte ahead (five
    // notices): everything after that waits until the host reads.
    let read = |f: &str| std::fs::read(d.path().join(f)).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("tls/ca.pem")))
        .identity(Identity::from_pem(
            read("clients/host.pem"),
            read("clients/host-key.pem"),
        ))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{}", d.port))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .initial_stream_window_size(1024)
        .connect()
        .await
        .expect("connected");
    let channel = breakglass_cli::connect::Channel::new(vec![(String::new(), channel)]);
    let mut stream = watch(&mut RevocationsClient::new(channel)).await;

    // More revocations than the old broadcast channel held, while the host reads nothing.
    const COUNT: usize = 1100;
    let granted = issue_many(&d, COUNT).await;
    let revoked = revocation_client(&d.target("sre"))
        .revoke(revoke_request(
            Selector::Requester("sre@example.com".into()),
            "INC-8 every grant of the SRE",
        ))
        .await
        .expect("revoked")
        .into_inner();
    assert_eq!(revoked.revoked.len(), COUNT);

    let mut seen = Vec::with_capacity(COUNT);
    let mut last = 0;
    while seen.len() < COUNT {
        let n = next_revocation(&mut stream).await;
        assert!(n.version > last, "in order: {} after {last}", n.version);
        last = n.version;
        seen.push(n.grant_id);
    }
    let seen: BTreeSet<String> = seen.into_iter().collect();
    assert_eq!(seen, granted.into_iter().collect::<BTreeSet<_>>());
    // And nothing more: the next message is a heartbeat.
    let more = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("a heartbeat within the wait")
        .unwrap()
        .unwrap();
    assert!(more.heartbeat, "no revocation twice: {more:?}");
}
