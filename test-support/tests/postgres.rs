//! The throw-away PostgreSQL cluster of the audit backend's tests: it starts, the daemon's
//! role can log in over TCP with its password (and not without it), a streaming replica
//! follows it and can be promoted, an immediate restart keeps what was committed, and
//! everything is gone after the drop.

use std::time::Duration;

use breakglass_test_support::postgres::{PgCluster, ROLE};

#[test]
fn cluster_serves_the_role_follows_a_replica_and_is_removed() {
    if !PgCluster::available("a throw-away PostgreSQL cluster") {
        return;
    }
    let mut cluster = PgCluster::start();
    let url = cluster.url();
    assert_eq!(
        cluster.psql_as_role(&url, "SELECT current_user").unwrap(),
        ROLE
    );
    let wrong = url.replace(&cluster.password, "not-the-password");
    let refused = cluster.psql_as_role(&wrong, "SELECT 1").unwrap_err();
    assert!(
        refused.contains("password authentication failed"),
        "{refused}"
    );
    cluster
        .psql_as_role(&url, "CREATE TABLE t (n integer PRIMARY KEY)")
        .unwrap();
    cluster
        .psql_as_role(&url, "INSERT INTO t VALUES (1)")
        .unwrap();

    // A crash of the database keeps what was committed.
    cluster.primary.restart_immediate();
    assert_eq!(cluster.psql("SELECT count(*) FROM t"), "1");

    // A replica follows, and is found through the multi-host URL once promoted.
    let mut replica = cluster.replica("replica1");
    cluster
        .psql_as_role(&url, "INSERT INTO t VALUES (2)")
        .unwrap();
    assert!(cluster.replica_caught_up(&replica, Duration::from_secs(30)));
    assert_eq!(replica.psql("breakglass", "SELECT count(*) FROM t"), "2");
    let both = cluster.url_of(&[&cluster.primary, &replica]);
    assert_eq!(
        cluster
            .psql_as_role(&both, "SELECT inet_server_port()")
            .unwrap(),
        cluster.primary.port.to_string(),
        "read-write goes to the primary"
    );
    let refused = cluster
        .psql_as_role(&cluster.url_of(&[&replica]), "INSERT INTO t VALUES (3)")
        .unwrap_err();
    assert!(
        refused.contains("read-write") || refused.contains("read-only"),
        "{refused}"
    );
    cluster.primary.stop("fast");
    replica.promote();
    cluster
        .psql_as_role(&both, "INSERT INTO t VALUES (3)")
        .unwrap();
    assert_eq!(
        cluster
            .psql_as_role(&both, "SELECT inet_server_port()")
            .unwrap(),
        replica.port.to_string(),
        "after the promotion, read-write goes to the replica"
    );

    let data = cluster.primary.data.clone();
    let root = data.parent().and_then(|p| p.parent()).unwrap().to_owned();
    let port = replica.port;
    drop(replica);
    drop(cluster);
    assert!(!root.exists(), "{} left behind", root.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the replica still listens on {port}"
    );
}
