use super::*;

fn server(
    max_connections: Option<usize>,
    max_handshakes: usize,
    per_source: usize,
) -> ServerConfig {
    let mut s = crate::config::Config::parse(
        std::path::Path::new("/etc/breakglass-ca/ca.toml"),
        "version = 1\n[server]\nlisten = \"127.0.0.1:7443\"\ntls_cert = \"c\"\ntls_key = \"k\"\nclient_ca = \"ca\"\n[ca]\nsigning_key = \"s\"\n[audit]\ndir = \"audit\"\nkey = \"audit_key.pem\"\n",
    )
    .unwrap()
    .server;
    s.max_connections = max_connections;
    s.max_handshakes = max_handshakes;
    s.max_handshakes_per_source = per_source;
    s
}

#[test]
fn tcp_gets_three_quarters_of_the_descriptors_and_never_all_of_a_small_limit() {
    assert_eq!(tcp_budget(1024), 768);
    assert_eq!(tcp_budget(65536), 49152);
    assert_eq!(tcp_budget(256), 192); // 64 kept
    assert_eq!(tcp_budget(100), 50); // half of a tiny limit
    assert_eq!(tcp_budget(0), 2);
    assert_eq!(tcp_budget(u64::MAX), 1 << 20);
    for limit in [3, 64, 128, 129, 300, 1000, 4096, 1 << 20] {
        assert!((tcp_budget(limit) as u64) < limit, "limit {limit}");
        assert!(limit - tcp_budget(limit) as u64 >= (limit / 2).min(FD_RESERVE_MIN));
    }
}

#[test]
fn limits_follow_the_config_within_the_descriptor_budget() {
    let (l, notes) = Limits::resolve(&server(None, 256, 32), 1024);
    assert_eq!(
        (
            l.max_connections,
            l.max_handshakes,
            l.max_handshakes_per_source
        ),
        (768, 256, 32)
    );
    assert!(notes.is_empty(), "{notes:?}");

    // The case: a small limit lowers the defaults, with a note.
    let (l, notes) = Limits::resolve(&server(None, 256, 32), 256);
    assert_eq!(
        (
            l.max_connections,
            l.max_handshakes,
            l.max_handshakes_per_source
        ),
        (192, 96, 32)
    );
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].contains("max_handshakes = 256 lowered to 96"),
        "{notes:?}"
    );

    let (l, notes) = Limits::resolve(&server(Some(5000), 100, 200), 1024);
    assert_eq!(
        (
            l.max_connections,
            l.max_handshakes,
            l.max_handshakes_per_source
        ),
        (768, 100, 100)
    );
    assert!(notes[0].contains("LimitNOFILE"), "{notes:?}");

    let (l, notes) = Limits::resolve(&server(Some(300), 150, 8), 1 << 20);
    assert_eq!((l.max_connections, l.max_handshakes), (300, 150));
    assert!(notes.is_empty());
}

#[test]
fn backoff_doubles_to_a_second_and_resets() {
    let mut b = Backoff::default();
    let seq: Vec<u64> = (0..10)
        .map(|_| b.after_failure().as_millis() as u64)
        .collect();
    assert_eq!(seq, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    b.reset();
    assert_eq!(b.after_failure(), Duration::from_millis(5));
}

#[test]
fn out_of_descriptor_errors_are_told_apart() {
    use nix::errno::Errno;
    let os = |e: Errno| io::Error::from_raw_os_error(e as i32);
    assert!(is_out_of_descriptors(&os(Errno::EMFILE)));
    assert!(is_out_of_descriptors(&os(Errno::ENFILE)));
    assert!(!is_out_of_descriptors(&os(Errno::ECONNABORTED)));
    assert!(!is_out_of_descriptors(&io::Error::other("x")));
}

#[test]
fn line_budget_allows_a_few_lines_per_window_and_counts_the_rest() {
    let b = LineBudget::new();
    let allowed = (0..100).filter(|_| b.allow()).count();
    assert_eq!(allowed, LINES_PER_WINDOW as usize);
    assert_eq!(
        b.suppressed.load(Ordering::Relaxed),
        100 - u64::from(LINES_PER_WINDOW)
    );
}
