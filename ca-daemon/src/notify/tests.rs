use super::*;
use breakglass_test_support::free_port;
use breakglass_test_support::syslog::SyslogCapture;

/// How long a syslog line may take to arrive.
const WAIT: Duration = Duration::from_secs(5);

#[test]
fn every_notice_is_also_one_syslog_line_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let syslog = SyslogCapture::bind(dir.path());
    let n = Notifier::new(NotifySettings {
        syslog: true,
        syslog_socket: syslog.path.clone(),
        ..NotifySettings::default()
    });
    let created = breakglass_proto::audit::event::RequestCreated {
        request_id: breakglass_proto::audit::RequestId(0xab),
        requester: "alice@example.com".into(),
        public_key: String::new(),
        principals: vec!["postgres".into()],
        hosts: vec!["db-7".into()],
        ttl_seconds: 600,
        reason: "INC-1 down".into(),
        command: None,
        source_addresses: vec![],
        extensions: vec![],
        emergency: true,
        rule: "r".into(),
        tier: "high".into(),
        approvals_required: 0,
        expires_at: Timestamp(0),
    };
    let actor = breakglass_proto::audit::Actor::User("alice@example.com".into());
    // No webhook URLs: only the syslog line.
    n.send(
        &[],
        notice(
            NoticeKind::Emergency,
            &created,
            vec![],
            &actor,
            None,
            Timestamp(1),
        ),
    );
    let line = syslog.nth(0, WAIT);
    for part in [
        "event=request_emergency",
        "request=r-00000000000000ab",
        "requester=alice@example.com",
        "principal=postgres",
        "tier=high",
    ] {
        assert!(line.contains(part), "{line}");
    }
    assert_eq!(n.counters().queued.load(Ordering::Relaxed), 0);
}

#[test]
fn syslog_lines_and_webhook_bodies_show_hazards_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let syslog = SyslogCapture::bind(dir.path());
    let n = Notifier::new(NotifySettings {
        syslog: true,
        syslog_socket: syslog.path.clone(),
        ..NotifySettings::default()
    });
    for (i, nasty) in text::NASTY_SAMPLES.into_iter().enumerate() {
        // As a request written before the rules existed may hold it.
        let created = breakglass_proto::audit::event::RequestCreated {
            request_id: breakglass_proto::audit::RequestId(1),
            requester: "alice@example.com".into(),
            public_key: String::new(),
            principals: vec!["postgres".into()],
            hosts: vec!["db-7".into()],
            ttl_seconds: 600,
            reason: nasty.into(),
            command: Some(format!("/bin/echo {nasty}")),
            source_addresses: vec![],
            extensions: vec![],
            emergency: false,
            rule: "r".into(),
            tier: "high".into(),
            approvals_required: 1,
            expires_at: Timestamp(0),
        };
        let actor = breakglass_proto::audit::Actor::User("bob@example.com".into());
        let mut notice = notice(
            NoticeKind::Denied,
            &created,
            vec![],
            &actor,
            None,
            Timestamp(1),
        );
        notice.detail = Some(nasty.to_owned());
        let body = serde_json::to_string(&notice.escaped()).unwrap();
        let back: serde_json::Value = serde_json::from_str(&body).unwrap();
        for field in ["reason", "command", "detail"] {
            let shown = back[field].as_str().unwrap();
            assert!(!shown.chars().any(text::is_hazard), "{field}: {shown:?}");
            assert!(shown.ends_with(text::escape(nasty).as_ref()), "{shown:?}");
        }
        n.send(&[], notice);
        let line = syslog.nth(i, WAIT);
        assert!(!line.chars().any(text::is_hazard), "{line:?}");
        assert!(
            line.contains(&format!("reason={}", text::kv_value(nasty))),
            "{line}"
        );
    }
}

#[test]
fn a_chat_message_says_who_what_where_and_how_to_approve_until_approved() {
    let created = breakglass_proto::audit::event::RequestCreated {
        request_id: breakglass_proto::audit::RequestId(0xab),
        requester: "alice@example.com".into(),
        public_key: String::new(),
        principals: vec!["postgres".into()],
        hosts: vec!["db-7".into(), "db-8".into()],
        ttl_seconds: 600,
        reason: "INC-1 <!channel> & <https://evil|click>".into(),
        command: None,
        source_addresses: vec![],
        extensions: vec![],
        emergency: false,
        rule: "r".into(),
        tier: "critical".into(),
        approvals_required: 2,
        expires_at: Timestamp(0),
    };
    let actor = breakglass_proto::audit::Actor::User("alice@example.com".into());
    let pending = notice(
        NoticeKind::Pending,
        &created,
        vec![],
        &actor,
        None,
        Timestamp(1),
    );
    let body: serde_json::Value =
        serde_json::from_slice(&render(&Payload::Request(pending), WebhookFormat::Slack).unwrap())
            .unwrap();
    let text = body["text"].as_str().unwrap();
    for part in [
        "Request r-00000000000000ab by alice@example.com waits for 2 approval(s)",
        "Access: postgres@db-7,db-8",
        "Tier: critical",
        "Reason: INC-1 &lt;!channel&gt; &amp; &lt;https://evil|click&gt;",
        "Approve with: `breakglass approve r-00000000000000ab`",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    let issued = Notice {
        grant_id: Some("g-0000000000000001".into()),
        approvers: vec!["bob@example.com".into(), "carol@example.com".into()],
        ..notice(
            NoticeKind::Issued,
            &created,
            vec![],
            &actor,
            None,
            Timestamp(1),
        )
    };
    let m = chat_message(&Payload::Request(issued));
    assert_eq!(
        m.headline,
        "Request r-00000000000000ab by alice@example.com issued: grant g-0000000000000001"
    );
    assert!(m.command.is_none(), "{m:?}");
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_given_up() {
    // Bind and drop a listener: the port refuses connections.
    let port = free_port();
    let settings = NotifySettings {
        timeout: Duration::from_millis(500),
        retries: 2,
        retry_delay: Duration::from_millis(10),
        ..NotifySettings::default()
    };
    let counters = Counters::default();
    deliver(
        &format!("http://127.0.0.1:{port}/"),
        Bytes::from_static(b"{}"),
        NoticeKind::Pending,
        &settings,
        &counters,
        &None,
    )
    .await;
    assert_eq!(counters.failed_attempts.load(Ordering::Relaxed), 3);
    assert_eq!(counters.given_up.load(Ordering::Relaxed), 1);
    assert_eq!(counters.delivered.load(Ordering::Relaxed), 0);
}
