//! Tests of the configuration: every section's rules and messages.

use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/breakglass/ca.toml"), text)
}

const MIN: &str = "version = 1\n[server]\nlisten = \"127.0.0.1:7443\"\ntls_cert = \"c\"\ntls_key = \"k\"\nclient_ca = \"ca\"\n[ca]\nsigning_key = \"s\"\n[audit]\ndir = \"audit\"\nkey = \"audit_key.pem\"\n";

#[test]
fn the_dev_config_is_valid() {
    let c = parse(&crate::init::dev_config("127.0.0.1:7443".parse().unwrap())).unwrap();
    assert_eq!(c.ca.signing_key, Path::new("/etc/breakglass/ssh_ca"));
    assert_eq!(c.policy.rules().len(), 5);
    let names: Vec<&str> = c.policy.tiers().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["low", "elevated", "critical", "drill"]);
    assert!(c.policy.tier("drill").unwrap().drill);
    assert_eq!(c.policy.tier("low").unwrap().approvals, 0);
    assert_eq!(c.policy.tier("critical").unwrap().approvals, 2);
    // The admin socket's root gets its groups from [[admin_users]], not [[identities]].
    assert!(c.identities.iter().all(|i| !i.id.starts_with("unix:")));
    assert_eq!(c.admin_users[0].user, "root");
    assert_eq!(c.admin_users[0].groups, ["admins"]);
    assert_eq!(c.refusals, RefusalSettings::default());
    // Metrics on loopback, at the port after the gRPC listener's; text logs.
    assert_eq!(
        c.server.metrics_listen,
        Some("127.0.0.1:7444".parse().unwrap())
    );
    assert_eq!(c.log.format, LogFormat::Text);
}

#[test]
fn metrics_listen_is_off_by_default_and_needs_its_own_address() {
    assert_eq!(parse(MIN).unwrap().server.metrics_listen, None);
    let with = |v: &str| {
        MIN.replace(
            "client_ca = \"ca\"\n",
            &format!("client_ca = \"ca\"\nmetrics_listen = {v:?}\n"),
        )
    };
    assert_eq!(
        parse(&with("127.0.0.1:9443"))
            .unwrap()
            .server
            .metrics_listen,
        Some("127.0.0.1:9443".parse().unwrap())
    );
    let e = parse(&with("localhost:9443")).unwrap_err();
    assert_eq!(e.field, "server.metrics_listen");
    assert!(e.reason.contains("not an address:port"), "{e}");
    let e = parse(&with("127.0.0.1:7443")).unwrap_err();
    assert_eq!(e.field, "server.metrics_listen");
    assert!(e.reason.contains("gRPC listener"), "{e}");
}

#[test]
fn log_format_is_text_or_json() {
    assert_eq!(parse(MIN).unwrap().log.format, LogFormat::Text);
    let json = format!("{MIN}[log]\nformat = \"json\"\n");
    assert_eq!(parse(&json).unwrap().log.format, LogFormat::Json);
    let e = parse(&format!("{MIN}[log]\nformat = \"xml\"\n")).unwrap_err();
    assert!(e.reason.contains("xml") && e.reason.contains("json"), "{e}");
}

#[test]
fn the_example_config_has_four_tiers_that_decide_as_documented() {
    use crate::policy::{Caller, Decision};
    use crate::request::AccessRequest;
    let text = include_str!("../../../packaging/ca/breakglass-ca.example.toml");
    let c = parse(text).unwrap();
    let tiers: Vec<&str> = c.policy.tiers().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        tiers,
        ["readonly", "standard", "production", "prod-root", "drill"]
    );
    let approvals: Vec<u32> = c.policy.tiers().iter().map(|t| t.approvals).collect();
    assert_eq!(approvals, [0, 1, 1, 2, 0]);
    assert!(c.policy.tier("prod-root").unwrap().emergency.is_none());
    assert!(c.policy.tier("production").unwrap().session_recording);
    assert_eq!(c.notifications.retries, 3);
    assert_eq!(
        c.refusals.webhooks,
        ["https://soc.example.com/hooks/breakglass-refusals"]
    );
    assert_eq!(
        c.notifications
            .format_of("https://chat.example.com/hooks/breakglass"),
        notifications::WebhookFormat::Slack
    );
    assert_eq!(
        c.notifications
            .format_of("https://pager.example.com/hooks/breakglass"),
        notifications::WebhookFormat::Json
    );
    let alice = Caller {
        identity: "alice@example.com".into(),
        groups: vec!["sre".into()],
        owner: Some("alice".into()),
        transport: "mtls",
        uid: None,
        ssh_key_login: false,
    };
    let req = |p: &str, h: &str, cmd: Option<&str>| AccessRequest {
        principals: vec![p.into()],
        hosts: vec![h.into()],
        ttl: Duration::from_secs(900),
        reason: "INC-1 investigating".into(),
        force_command: cmd.map(str::to_owned),
        source_addresses: vec![],
        extensions: None,
        drill: false,
    };
    let day = std::time::UNIX_EPOCH + Duration::from_secs(20_000 * 86_400);
    let noon = day + Duration::from_secs(12 * 3600);
    let night = day + Duration::from_secs(23 * 3600);
    let tier = |r: &AccessRequest, at| match c.policy.decide(&alice, r, at) {
        Decision::Allow(g) => g.tier,
        Decision::Deny(why) => format!("denied: {why}"),
    };
    let ro = Some("/usr/bin/systemctl status");
    assert_eq!(
        tier(&req("app", "web-1.staging.example.com", ro), noon),
        "readonly"
    );
    assert_eq!(
        tier(&req("app", "web-1.staging.example.com", None), noon),
        "standard"
    );
    assert_eq!(
        tier(&req("app", "web-1.prod.example.com", ro), noon),
        "standard"
    );
    assert_eq!(
        tier(&req("app", "web-1.prod.example.com", None), noon),
        "production"
    );
    assert_eq!(
        tier(&req("app", "web-1.prod.example.com", None), night),
        "prod-root"
    );
    assert_eq!(
        tier(&req("root", "db-1.prod.example.com", None), noon),
        "prod-root"
    );
    assert!(tier(&req("root", "audit-1.prod.example.com", None), noon).starts_with("denied"));
    // Host patterns: the whole fleet as a pattern would reach the audit hosts, so it is
    // refused as root; a narrower pattern clear of them is granted; and nothing wider
    // than a rule's pattern is.
    let all = tier(&req("root", "*.prod.example.com", None), noon);
    assert!(
        all.starts_with("denied: denied by policy rule `no-root-on-audit`"),
        "{all}"
    );
    assert_eq!(
        tier(&req("root", "db-*.prod.example.com", None), noon),
        "prod-root"
    );
    assert_eq!(
        tier(&req("app", "*.prod.example.com", None), noon),
        "production"
    );
    let wide = tier(&req("app", "*.example.com", None), noon);
    assert!(
        wide.contains("host pattern *.example.com is not allowed"),
        "{wide}"
    );

    // Drills: only the drill runner, only as a drill, only the drill's command.
    let runner = Caller {
        identity: "spiffe://example.com/breakglass/drill-runner".into(),
        groups: vec!["drill-runners".into()],
        owner: None,
        transport: "mtls",
        uid: None,
        ssh_key_login: false,
    };
    let drill = AccessRequest {
        drill: true,
        ttl: Duration::from_secs(300),
        ..req(
            "breakglass-drill",
            "canary-1.prod.example.com",
            Some("echo breakglass-drill"),
        )
    };
    let decide = |who: &Caller, r: &AccessRequest| match c.policy.decide(who, r, night) {
        Decision::Allow(g) => g.tier,
        Decision::Deny(why) => format!("denied: {why}"),
    };
    assert_eq!(decide(&runner, &drill), "drill");
    let not_a_drill = AccessRequest {
        drill: false,
        ..drill.clone()
    };
    assert!(decide(&runner, &not_a_drill).starts_with("denied: no policy rule"));
    assert!(decide(&alice, &drill).starts_with("denied: no drill rule lets alice@example.com"));
    let shell = AccessRequest {
        force_command: None,
        ..drill.clone()
    };
    assert!(
        decide(&runner, &shell).contains("interactive shell is not allowed"),
        "{}",
        decide(&runner, &shell)
    );
}

#[test]
fn a_drill_tier_never_needs_approval_and_is_no_emergency() {
    let rule = "[[rules]]\nname = \"r\"\ntier = \"d\"\ngroups = [\"g\"]\nprincipals = [\"a\"]\nhosts = [\"h\"]\ncommands = [\"echo breakglass-drill\"]\nmax_ttl = \"5m\"\n";
    let ok = "[[tiers]]\nname = \"d\"\ndrill = true\nmax_ttl = \"5m\"\n";
    let c = parse(&format!("{MIN}{ok}{rule}")).unwrap();
    assert!(c.policy.tier("d").unwrap().drill);
    let approvals = "[[tiers]]\nname = \"d\"\ndrill = true\napprovals = 1\napprovers = [\"x\"]\nmax_ttl = \"5m\"\n";
    let e = parse(&format!("{MIN}{approvals}{rule}")).unwrap_err();
    assert_eq!(e.field, "tiers[0].approvals");
    assert!(e.reason.contains("set approvals = 0"), "{e}");
    let emergency = "[[tiers]]\nname = \"d\"\ndrill = true\nemergency = true\nmax_ttl = \"5m\"\n";
    let e = parse(&format!("{MIN}{emergency}{rule}")).unwrap_err();
    assert_eq!(e.field, "tiers[0].emergency");
    // Its rules grant only the drill's command: no shell, no other command, no extension.
    for (change, field) in [
        ("interactive = true\n", "rules[0].interactive"),
        ("commands = [\"/bin/sh\"]\n", "rules[0].commands"),
        ("extensions = [\"permit-pty\"]\n", "rules[0].extensions"),
    ] {
        let bad = rule.replace("commands = [\"echo breakglass-drill\"]\n", change);
        let bad = if field.ends_with("commands") || field.ends_with("interactive") {
            bad
        } else {
            format!("{rule}{change}")
        };
        let e = parse(&format!("{MIN}{ok}{bad}")).unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }
}

#[test]
fn tier_errors_name_the_tier_field() {
    let tier =
        "[[tiers]]\nname = \"t\"\napprovals = 1\napprovers = [\"leads\"]\nmax_ttl = \"1h\"\n";
    let rule = "[[rules]]\nname = \"r\"\ntier = \"t\"\ngroups = [\"g\"]\nprincipals = [\"a\"]\nhosts = [\"h\"]\ninteractive = true\nmax_ttl = \"30m\"\n";
    parse(&format!("{MIN}{tier}{rule}")).unwrap();
    let cases = [
        (
            tier.replace("approvers = [\"leads\"]\n", ""),
            rule.to_owned(),
            "tiers[0].approvers",
        ),
        (
            tier.replace("approvals = 1", "approvals = 11"),
            rule.to_owned(),
            "tiers[0].approvals",
        ),
        (
            format!("{tier}ticket_required = true\n"),
            rule.to_owned(),
            "tiers[0].ticket_pattern",
        ),
        (
            format!("{tier}ticket_required = true\nticket_pattern = \"(\"\n"),
            rule.to_owned(),
            "tiers[0].ticket_pattern",
        ),
        (
            format!("{tier}emergency_ttl = \"5m\"\n"),
            rule.to_owned(),
            "tiers[0].emergency",
        ),
        (
            format!("{tier}emergency = true\nemergency_ttl = \"2h\"\n"),
            rule.to_owned(),
            "tiers[0].emergency_ttl",
        ),
        (
            format!("{tier}webhooks = [\"ftp://x/\"]\n"),
            rule.to_owned(),
            "tiers[0].webhooks",
        ),
        (format!("{tier}{tier}"), rule.to_owned(), "tiers[1].name"),
        (
            format!("{tier}session_recording = true\nrecorder = \"bin/rec; sh\"\n"),
            rule.to_owned(),
            "tiers[0].recorder",
        ),
        (
            format!("{tier}record_input = true\n"),
            rule.to_owned(),
            "tiers[0].record_input",
        ),
        (
            tier.to_owned(),
            rule.replace("tier = \"t\"", "tier = \"nope\""),
            "rules[0].tier",
        ),
        (
            tier.to_owned(),
            rule.replace("tier = \"t\"\n", ""),
            "rules[0].tier",
        ),
        (
            tier.to_owned(),
            rule.replace("max_ttl = \"30m\"", "max_ttl = \"2h\""),
            "rules[0].max_ttl",
        ),
        (
            tier.to_owned(),
            format!("{rule}hours = [\"25:00-26:00\"]\n"),
            "rules[0].hours",
        ),
    ];
    for (t, r, field) in cases {
        let e = parse(&format!("{MIN}{t}{r}")).unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }
}

#[test]
fn unknown_fields_and_versions_are_rejected_with_the_field() {
    let e = parse(&MIN.replace("[ca]", "colour = \"blue\"\n[ca]"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `colour`"), "{e}");
    let e = parse(&MIN.replace("version = 1", "version = 2")).unwrap_err();
    assert_eq!(e.field, "version");
}

#[test]
fn unix_identities_are_refused_in_identities_and_pointed_at_admin_users() {
    let ok = "[[identities]]\nid = \"a@example.com\"\ngroups = [\"sre\"]\n";
    for id in ["unix:root", "UNIX:root", "unix:uid=0"] {
        let bad = format!("{ok}[[identities]]\nid = \"{id}\"\ngroups = [\"admins\"]\n");
        let e = parse(&format!("{MIN}{bad}")).unwrap_err();
        assert_eq!(e.field, "identities[1].id", "{e}");
        assert!(
            e.reason
                .contains("reserved for local users of the admin socket")
                && e.reason.contains("[[admin_users]]")
                && e.reason.contains("groups = [\"admins\"]"),
            "{e}"
        );
    }
    let e = parse(&format!("{MIN}[[identities]]\nid = \"unix:root\"\n")).unwrap_err();
    assert!(e.reason.contains("user = \"root\""), "{e}");
}

#[test]
fn admin_users_give_local_users_groups_and_are_checked() {
    let with_socket = MIN.replace(
        "listen = \"127.0.0.1:7443\"\n",
        "listen = \"127.0.0.1:7443\"\nadmin_socket = \"admin.sock\"\n",
    );
    let root = "[[admin_users]]\nuser = \"root\"\ngroups = [\"admins\"]\n";
    let c = parse(&format!("{with_socket}{root}")).unwrap();
    assert_eq!(c.admin_users.len(), 1);
    assert_eq!(c.admin_users[0].user, "root");
    assert_eq!(c.admin_users[0].groups, ["admins"]);
    assert!(c.identities.is_empty());
    let cases = [
        (
            format!("{with_socket}{root}{root}"),
            "admin_users[1].user",
            "listed twice",
        ),
        (
            format!("{with_socket}{}", root.replace("\"root\"", "\"unix:root\"")),
            "admin_users[0].user",
            "without the unix: prefix",
        ),
        (
            format!("{with_socket}{}", root.replace("\"root\"", "\"ro ot\"")),
            "admin_users[0].user",
            "local Unix user name",
        ),
        (
            format!("{with_socket}{}", root.replace("\"admins\"", "\"ad mins\"")),
            "admin_users[0].groups",
            "letters, digits",
        ),
        (
            format!("{MIN}{root}"),
            "admin_users[0].user",
            "admin_socket is not set",
        ),
    ];
    for (text, field, says) in cases {
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field, field, "{e}");
        assert!(e.reason.contains(says), "{e}");
    }
    let e = parse(&format!("{with_socket}{root}owner = \"x\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `owner`"), "{e}");
}

#[test]
fn the_readme_identities_example_is_valid() {
    let readme = include_str!("../../../README.md");
    let section = &readme[readme.find("**Identities.**").unwrap()..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let with_socket = MIN.replace(
        "listen = \"127.0.0.1:7443\"\n",
        "listen = \"127.0.0.1:7443\"\nadmin_socket = \"admin.sock\"\n",
    );
    let c = parse(&format!("{with_socket}{example}")).unwrap();
    assert_eq!(c.identities[0].id, "alice@example.com");
    assert_eq!(c.admin_users[0].user, "root");
}

#[test]
fn rule_errors_name_the_rule_field() {
    let rule = "[[rules]]\nname = \"r\"\ngroups = [\"g\"]\nprincipals = [\"a\"]\nhosts = [\"h\"]\ninteractive = true\nmax_ttl = \"30m\"\n";
    parse(&format!("{MIN}{rule}")).unwrap();
    parse(&format!(
        "{MIN}{}",
        rule.replace("hosts = [\"h\"]", "hosts = [\"db-??.*.example\"]")
            .replace("principals = [\"a\"]", "principals = [\"app-*\", \"?\"]")
    ))
    .unwrap();
    let cases = [
        (
            rule.replace("max_ttl = \"30m\"", "max_ttl = \"30 parsecs\""),
            "rules[0].max_ttl",
        ),
        (
            rule.replace("max_ttl = \"30m\"", "max_ttl = \"13h\""),
            "rules[0].max_ttl",
        ),
        (rule.replace("max_ttl = \"30m\"\n", ""), "rules[0].max_ttl"),
        (
            rule.replace("hosts = [\"h\"]", "hosts = [\"a b\"]"),
            "rules[0].hosts",
        ),
        (
            rule.replace("principals = [\"a\"]", "principals = [\"a,b\"]"),
            "rules[0].principals",
        ),
        // Patterns have `*` and `?` only: no `[...]` classes, which hosts do not match.
        (
            rule.replace("hosts = [\"h\"]", "hosts = [\"db-[0-9]\"]"),
            "rules[0].hosts",
        ),
        (
            rule.replace("principals = [\"a\"]", "principals = [\"app-[ab]\"]"),
            "rules[0].principals",
        ),
        (
            rule.replace("interactive = true", "interactive = false"),
            "rules[0].commands",
        ),
        (
            format!("{rule}source_addresses = [\"10.0.0.1/8\"]\n"),
            "rules[0].source_addresses",
        ),
        (
            format!("{rule}extensions = [\"permit-all\"]\n"),
            "rules[0].extensions",
        ),
        (format!("{rule}effect = \"maybe\"\n"), "rules[0].effect"),
        (format!("{rule}{rule}"), "rules[1].name"),
    ];
    for (text, field) in cases {
        let e = parse(&format!("{MIN}{text}")).unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }
}

#[test]
fn refusal_settings_have_defaults_limits_and_a_webhook_fallback() {
    let c = parse(MIN).unwrap();
    assert_eq!(c.refusals, RefusalSettings::default());
    assert_eq!(
        (c.refusals.per_identity_per_hour, c.refusals.alert_threshold),
        (60, 10)
    );
    let tiers = "[[tiers]]\nname = \"a\"\nmax_ttl = \"1h\"\nwebhooks = [\"http://127.0.0.1:1/a\", \"http://127.0.0.1:1/b\"]\n\
                 [[tiers]]\nname = \"b\"\nmax_ttl = \"1h\"\nwebhooks = [\"http://127.0.0.1:1/b\"]\n";
    // Without `webhooks`, the alert goes to every distinct tier webhook; `[]` to none.
    let c = parse(&format!("{MIN}{tiers}")).unwrap();
    assert_eq!(
        c.refusals.webhooks,
        ["http://127.0.0.1:1/a", "http://127.0.0.1:1/b"]
    );
    let c = parse(&format!("{MIN}{tiers}[refusals]\nwebhooks = []\n")).unwrap();
    assert!(c.refusals.webhooks.is_empty());
    let c = parse(&format!(
        "{MIN}[refusals]\nper_identity_per_hour = 5\nwebhooks = [\"https://soc.example/hook\"]\n"
    ))
    .unwrap();
    assert_eq!(
        c.refusals,
        RefusalSettings {
            per_identity_per_hour: 5,
            // The default threshold never exceeds the limit.
            alert_threshold: 5,
            webhooks: vec!["https://soc.example/hook".into()],
        }
    );
    let cases = [
        (
            "per_identity_per_hour = 0",
            "refusals.per_identity_per_hour",
        ),
        (
            "per_identity_per_hour = 100001",
            "refusals.per_identity_per_hour",
        ),
        (
            "per_identity_per_hour = 5\nalert_threshold = 6",
            "refusals.alert_threshold",
        ),
        ("webhooks = [\"ftp://x/\"]", "refusals.webhooks"),
    ];
    for (text, field) in cases {
        let e = parse(&format!("{MIN}[refusals]\n{text}\n")).unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }
    let e = parse(&format!("{MIN}[refusals]\nper_hour = 5\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `per_hour`"), "{e}");
    let e = parse(&format!(
        "{MIN}[refusals]\nper_identity_per_hour = 5\nalert_threshold = 6\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("lower alert_threshold"), "{e}");
}

#[test]
fn connection_limits_default_and_are_checked_with_the_field() {
    let c = parse(MIN).unwrap();
    assert_eq!(c.server.handshake_timeout, Duration::from_secs(5));
    assert_eq!(c.server.max_connections, None);
    assert_eq!(c.server.max_handshakes, 256);
    assert_eq!(c.server.max_handshakes_per_source, 32);
    let with = |lines: &str| {
        MIN.replace(
            "client_ca = \"ca\"\n",
            &format!("client_ca = \"ca\"\n{lines}\n"),
        )
    };
    let c = parse(&with(
        "max_connections = 1000\nmax_handshakes = 500\nmax_handshakes_per_source = 4",
    ))
    .unwrap();
    assert_eq!(c.server.max_connections, Some(1000));
    assert_eq!(
        (c.server.max_handshakes, c.server.max_handshakes_per_source),
        (500, 4)
    );
    let cases = [
        (
            "max_connections = 1",
            "server.max_connections",
            "range 2 to",
        ),
        ("max_handshakes = 0", "server.max_handshakes", "range 1 to"),
        (
            "max_handshakes_per_source = 0",
            "server.max_handshakes_per_source",
            "range 1 to",
        ),
        (
            "max_handshakes = 8\nmax_handshakes_per_source = 9",
            "server.max_handshakes_per_source",
            "more than max_handshakes (8)",
        ),
        (
            "max_connections = 100\nmax_handshakes = 51",
            "server.max_handshakes",
            "lower it to 50",
        ),
        ("max_handshakes = -1", "line 7", "invalid value"),
        (
            "handshake_timeout = \"1h\"",
            "server.handshake_timeout",
            "5m",
        ),
    ];
    for (lines, field, says) in cases {
        let e = parse(&with(lines)).unwrap_err();
        assert_eq!(e.field, field, "{lines}: {e}");
        assert!(e.reason.contains(says), "{lines}: {e}");
    }
}

#[test]
fn webhook_urls_are_checked() {
    notifications::check_webhook_url("http://127.0.0.1:9000/hook").unwrap();
    notifications::check_webhook_url("https://hooks.example.com/x?y=1").unwrap();
    assert!(
        notifications::check_webhook_url("ftp://x/")
            .unwrap_err()
            .contains("only http")
    );
    assert!(notifications::check_webhook_url("not a url").is_err());
    assert!(notifications::check_webhook_url("/relative").is_err());
}

#[test]
fn webhook_formats_name_a_webhook_of_a_tier_or_of_refusals() {
    use notifications::WebhookFormat;
    let tiers = "[[tiers]]\nname = \"a\"\nmax_ttl = \"1h\"\nwebhooks = [\"http://127.0.0.1:1/json\", \"https://hooks.slack.example/services/T1/B2/secret\"]\n";
    let c = parse(&format!(
        "{MIN}{tiers}[[webhooks]]\nurl = \"https://hooks.slack.example/services/T1/B2/secret\"\nformat = \"slack\"\n"
    ))
    .unwrap();
    assert_eq!(
        c.notifications
            .format_of("https://hooks.slack.example/services/T1/B2/secret"),
        WebhookFormat::Slack
    );
    assert_eq!(
        c.notifications.format_of("http://127.0.0.1:1/json"),
        WebhookFormat::Json
    );
    // `format` defaults to json; the refusal alert's own webhooks count as named.
    let c = parse(&format!(
        "{MIN}[refusals]\nwebhooks = [\"https://soc.example/hook\"]\n[[webhooks]]\nurl = \"https://soc.example/hook\"\n"
    ))
    .unwrap();
    assert_eq!(
        c.notifications.format_of("https://soc.example/hook"),
        WebhookFormat::Json
    );
    let cases = [
        // Nothing sends to it: a mistake, named without the URL's secret path.
        (
            "url = \"https://elsewhere.example/x/secret\"",
            "webhooks[0].url",
            "is not a webhook of any tier",
        ),
        (
            "url = \"http://127.0.0.1:1/json\"\nformat = \"teams\"",
            "webhooks[0].format",
            "\"slack\"",
        ),
        (
            "url = \"http://127.0.0.1:1/json\"\n[[webhooks]]\nurl = \"http://127.0.0.1:1/json\"",
            "webhooks[1].url",
            "earlier [[webhooks]] entry",
        ),
        (
            "url = \"ftp://x/\"",
            "webhooks[0].url",
            "only http:// and https://",
        ),
        // The parser says it first, with the line.
        ("format = \"slack\"", "line ", "missing field `url`"),
    ];
    for (entry, field, says) in cases {
        let e = parse(&format!("{MIN}{tiers}[[webhooks]]\n{entry}\n")).unwrap_err();
        assert!(e.field.starts_with(field), "{entry}: {e}");
        assert!(e.reason.contains(says), "{entry}: {e}");
        assert!(!e.reason.contains("secret"), "{e}");
    }
}

#[test]
fn the_readme_slack_webhook_example_is_valid() {
    use notifications::WebhookFormat;
    let readme = include_str!("../../../README.md");
    let section = &readme[readme.find("**Slack and Mattermost.**").unwrap()..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let c = parse(&format!("{MIN}{example}")).unwrap();
    assert_eq!(
        c.notifications
            .format_of("https://hooks.slack.com/services/T000/B000/XXXX"),
        WebhookFormat::Slack
    );
    assert_eq!(
        c.notifications.format_of("https://soc.example/breakglass"),
        WebhookFormat::Json
    );
}

#[test]
fn a_recording_tier_names_its_recorder_or_gets_the_packaged_one() {
    let tier = "[[tiers]]\nname = \"t\"\nmax_ttl = \"1h\"\nsession_recording = true\n";
    let c = parse(&format!("{MIN}{tier}")).unwrap();
    let t = c.policy.tier("t").unwrap();
    assert_eq!(
        (t.recorder.as_str(), t.record_input),
        (breakglass_proto::recording::DEFAULT_RECORDER, false)
    );
    let c = parse(&format!(
        "{MIN}{tier}recorder = \"/opt/bg/breakglass-record\"\nrecord_input = true\n"
    ))
    .unwrap();
    let t = c.policy.tier("t").unwrap();
    assert_eq!(
        (t.recorder.as_str(), t.record_input),
        ("/opt/bg/breakglass-record", true)
    );
}
