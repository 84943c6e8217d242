//! Tests of the policy: rule matching, tiers, admission.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use breakglass_proto::audit::event::RefusalKind;
use breakglass_proto::patterns::{self, Case};

use super::*;
use crate::request::AccessRequest;

use crate::config::Config;

const BASE: &str = r#"
version = 1
[server]
listen = "127.0.0.1:0"
tls_cert = "c"
tls_key = "k"
client_ca = "ca"
[ca]
signing_key = "s"
[audit]
dir = "audit"
key = "audit_key.pem"
"#;

fn policy(rules: &str) -> Policy {
    Config::parse(
        std::path::Path::new("/t/cfg.toml"),
        &format!("{BASE}{rules}"),
    )
    .expect("config parses")
    .policy
}

/// 12:00 UTC on some day.
fn noon() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 12 * 3600)
}

fn sre() -> Caller {
    Caller {
        identity: "alice@example.com".into(),
        groups: vec!["sre".into()],
        owner: None,
        transport: "mtls",
        uid: None,
        ssh_key_login: false,
    }
}

fn req() -> AccessRequest {
    AccessRequest {
        principals: vec!["postgres".into()],
        hosts: vec!["db-7".into()],
        ttl: Duration::from_secs(600),
        reason: "INC-1".into(),
        force_command: Some("/usr/bin/psql".into()),
        source_addresses: vec!["10.1.2.0/24".parse().unwrap()],
        extensions: None,
        drill: false,
    }
}

const RULE: &str = r#"
[[rules]]
name = "db"
groups = ["sre"]
principals = ["postgres", "app-*"]
hosts = ["db-*"]
commands = ["/usr/bin/psql"]
source_addresses = ["10.0.0.0/8"]
max_ttl = "30m"
extensions = ["permit-pty", "permit-port-forwarding"]
"#;

const DRILL: &str = r#"
[[tiers]]
name = "standard"
max_ttl = "1h"

[[tiers]]
name = "drill"
drill = true
max_ttl = "10m"

[[rules]]
name = "db"
groups = ["sre"]
principals = ["postgres"]
hosts = ["db-*"]
interactive = true
commands = ["echo breakglass-drill"]
max_ttl = "30m"

[[rules]]
name = "db-drill"
tier = "drill"
groups = ["sre"]
principals = ["postgres"]
hosts = ["db-7"]
commands = ["echo breakglass-drill"]
max_ttl = "10m"
"#;

#[test]
fn drill_requests_match_only_drill_tiers_and_drill_tiers_only_drills() {
    let p = policy(DRILL);
    let drill = AccessRequest {
        force_command: Some("echo breakglass-drill".into()),
        source_addresses: vec![],
        drill: true,
        ..req()
    };
    let g = allowed(p.decide(&sre(), &drill, noon()));
    assert_eq!((g.rule.as_str(), g.tier.as_str()), ("db-drill", "drill"));
    // The same request, not as a drill, gets the ordinary rule, never the drill tier.
    let plain = AccessRequest {
        drill: false,
        ..drill.clone()
    };
    assert_eq!(allowed(p.decide(&sre(), &plain, noon())).tier, "standard");
    // A drill outside the drill rule's scope does not borrow the ordinary rule.
    let elsewhere = AccessRequest {
        hosts: vec!["db-8".into()],
        ..drill.clone()
    };
    let why = denied(p.decide(&sre(), &elsewhere, noon()));
    assert!(why.contains("rule `db-drill`"), "{why}");
    // Without any drill rule for the caller, the message says what to add.
    let why = denied(policy(RULE).decide(&sre(), &drill, noon()));
    assert!(
        why.starts_with("no drill rule lets alice@example.com"),
        "{why}"
    );
    assert!(why.contains("drill = true"), "{why}");
}

fn allowed(d: Decision) -> Grant {
    match d {
        Decision::Allow(g) => g,
        Decision::Deny(why) => panic!("denied: {why}"),
    }
}

fn denied(d: Decision) -> String {
    match d {
        Decision::Allow(g) => panic!("allowed by {}", g.rule),
        Decision::Deny(why) => why.message,
    }
}

fn denial(d: Decision) -> Denial {
    match d {
        Decision::Allow(g) => panic!("allowed by {}", g.rule),
        Decision::Deny(why) => why,
    }
}

#[test]
fn a_denial_says_its_kind_and_rule() {
    let p = policy(&format!(
        "{RULE}[[rules]]\nname = \"no-root\"\neffect = \"deny\"\nprincipals = [\"root\"]\n"
    ));
    let mut r = req();
    r.principals = vec!["root".into()];
    let d = denial(p.decide(&sre(), &r, noon()));
    assert_eq!(
        (d.kind, d.rule.as_deref()),
        (RefusalKind::DenyRule, Some("no-root"))
    );
    let mut r = req();
    r.ttl = Duration::from_secs(7200);
    let d = denial(p.decide(&sre(), &r, noon()));
    assert_eq!((d.kind, d.rule.as_deref()), (RefusalKind::Ttl, Some("db")));
    assert_eq!(d.to_string(), d.message);
    let mut r = req();
    r.hosts = vec!["web-1".into()];
    let d = denial(p.decide(&sre(), &r, noon()));
    assert_eq!(
        (d.kind, d.rule.as_deref()),
        (RefusalKind::NoRule, Some("db"))
    );
    let stranger = Caller {
        identity: "mallory@example.com".into(),
        groups: vec![],
        ..sre()
    };
    let d = denial(p.decide(&stranger, &req(), noon()));
    assert_eq!((d.kind, d.rule), (RefusalKind::NoRule, None));
}

#[test]
fn nothing_is_allowed_without_rules() {
    let why = denied(policy("").decide(&sre(), &req(), noon()));
    assert!(
        why.contains("no policy rule lets alice@example.com"),
        "{why}"
    );
}

#[test]
fn requester_dimension() {
    let p = policy(RULE);
    assert_eq!(allowed(p.decide(&sre(), &req(), noon())).rule, "db");
    let other = Caller {
        groups: vec!["web".into()],
        ..sre()
    };
    assert!(denied(p.decide(&other, &req(), noon())).contains("no policy rule"));
    let by_id = policy(&RULE.replace("groups = [\"sre\"]", "identities = [\"alice@example.com\"]"));
    allowed(by_id.decide(&other, &req(), noon()));
}

#[test]
fn principal_dimension() {
    let p = policy(RULE);
    let mut r = req();
    r.principals = vec!["app-api".into()];
    allowed(p.decide(&sre(), &r, noon()));
    r.principals = vec!["postgres".into(), "root".into()];
    let why = denied(p.decide(&sre(), &r, noon()));
    assert!(why.contains("principal root is not allowed"), "{why}");
}

#[test]
fn host_dimension() {
    let p = policy(RULE);
    let mut r = req();
    r.hosts = vec!["DB-12".into(), "db-*".into()];
    allowed(p.decide(&sre(), &r, noon()));
    r.hosts = vec!["web-1".into()];
    let why = denied(p.decide(&sre(), &r, noon()));
    assert!(
        why.contains("host web-1 is not allowed for postgres"),
        "{why}"
    );
    // A wider pattern than the rule's is not covered by it; the message shows a host
    // it would have admitted.
    r.hosts = vec!["*".into()];
    let why = denied(p.decide(&sre(), &r, noon()));
    assert!(
        why.starts_with("host pattern * is not allowed for postgres by rule `db`: it also matches x, which the rule's hosts (db-*) do not"),
        "{why}"
    );
    // A narrower one is.
    r.hosts = vec!["db-1*".into(), "DB-??".into()];
    allowed(p.decide(&sre(), &r, noon()));
}

/// The rules of the two examples in the hardening issue, and the dev config's.
const PATTERNS: &str = r#"
[[rules]]
name = "dev"
groups = ["sre"]
principals = ["postgres"]
hosts = ["*.dev.example"]
interactive = true
max_ttl = "30m"

[[rules]]
name = "q"
groups = ["sre"]
principals = ["postgres"]
hosts = ["app-?.q.example"]
interactive = true
max_ttl = "30m"

[[rules]]
name = "no-secrets"
effect = "deny"
hosts = ["secret-*.dev.example"]
"#;

fn shell_on(hosts: &[&str]) -> AccessRequest {
    AccessRequest {
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        force_command: None,
        source_addresses: vec![],
        ..req()
    }
}

#[test]
fn a_requested_pattern_reaching_a_denied_host_is_denied() {
    let p = policy(PATTERNS);
    let why = denied(p.decide(&sre(), &shell_on(&["*.dev.example"]), noon()));
    assert_eq!(
        why,
        "denied by policy rule `no-secrets` for postgres@*.dev.example: host pattern *.dev.example also matches secret-y.dev.example, which this rule denies"
    );
    // Also through `?`, upper case, or among other hosts.
    for hosts in [
        &["s?cret-1.dev.example"][..],
        &["SECRET-*"],
        &["web-1.dev.example", "*t-*.dev.example"],
    ] {
        let why = denied(p.decide(&sre(), &shell_on(hosts), noon()));
        assert!(
            why.starts_with("denied by policy rule `no-secrets`"),
            "{why}"
        );
    }
    // A narrower pattern that stays clear of the denied hosts is granted.
    let g = allowed(p.decide(&sre(), &shell_on(&["web-*.dev.example"]), noon()));
    assert_eq!(g.rule, "dev");
}

#[test]
fn a_question_mark_in_a_rule_does_not_grant_a_star() {
    let p = policy(PATTERNS);
    let why = denied(p.decide(&sre(), &shell_on(&["app-*.q.example"]), noon()));
    assert_eq!(
        why,
        "host pattern app-*.q.example is not allowed for postgres by rule `q`: it also matches app-yy.q.example, which the rule's hosts (app-?.q.example) do not; ask for host names, or a pattern that matches only hosts the rule allows"
    );
    denied(p.decide(&sre(), &shell_on(&["app-??.q.example"]), noon()));
    // The rule's pattern repeated, in any case, and the names it matches are granted.
    for hosts in [
        &["app-?.q.example"][..],
        &["APP-?.Q.EXAMPLE"],
        &["app-1.q.example", "app-2.q.example"],
    ] {
        assert_eq!(
            allowed(p.decide(&sre(), &shell_on(hosts), noon())).rule,
            "q"
        );
    }
}

#[test]
fn a_deny_rule_naming_commands_also_denies_a_shell() {
    let deny = "[[rules]]\nname = \"no-psql\"\neffect = \"deny\"\ncommands = [\"/usr/bin/psql\"]\n";
    let p = policy(&format!(
        "{}{deny}",
        RULE.replace(
            "commands = [\"/usr/bin/psql\"]",
            "commands = [\"/usr/bin/psql\", \"/usr/bin/id\"]\ninteractive = true"
        )
    ));
    let why = denied(p.decide(&sre(), &req(), noon()));
    assert!(why.starts_with("denied by policy rule `no-psql`"), "{why}");
    let shell = AccessRequest {
        force_command: None,
        ..req()
    };
    let why = denied(p.decide(&sre(), &shell, noon()));
    assert!(
        why.ends_with(": an interactive shell can run /usr/bin/psql, which this rule denies"),
        "{why}"
    );
    let id = AccessRequest {
        force_command: Some("/usr/bin/id".into()),
        ..req()
    };
    allowed(p.decide(&sre(), &id, noon()));
}

#[test]
fn principal_patterns_are_case_sensitive_and_deny_overlaps() {
    let p = policy(&format!(
        "{RULE}[[rules]]\nname = \"no-app-admin\"\neffect = \"deny\"\nprincipals = [\"app-adm?n\"]\n"
    ));
    let mut r = req();
    r.principals = vec!["App-api".into()];
    let why = denied(p.decide(&sre(), &r, noon()));
    assert!(why.contains("principal App-api is not allowed"), "{why}");
    r.principals = vec!["app-api".into(), "app-admin".into()];
    let why = denied(p.decide(&sre(), &r, noon()));
    assert!(
        why.starts_with("denied by policy rule `no-app-admin`"),
        "{why}"
    );
}

/// One allow rule and one deny rule over a small alphabet, so that patterns meet.
fn host_pattern() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    proptest::collection::vec(prop::sample::select(vec!['a', 'B', '-', '*', '?']), 1..=5)
        .prop_map(|v| v.into_iter().collect())
}

/// Every host name of up to 5 characters over `a`, `b`, `-` and `x` (which the
/// patterns never name): with patterns of up to 5 characters, every way a name can
/// meet them.
fn short_names() -> Vec<String> {
    let mut all = vec![String::new()];
    let mut last = vec![String::new()];
    for _ in 0..5 {
        last = last
            .iter()
            .flat_map(|s| ['a', 'b', '-', 'x'].map(|c| format!("{s}{c}")))
            .collect();
        all.extend(last.iter().cloned());
    }
    all
}

proptest::proptest! {
    /// An allowed pattern: every host name it matches is allowed by the same rule
    /// and matched by no deny rule.
    #[test]
    fn an_allowed_pattern_allows_only_names_the_rules_allow(
        allow in proptest::collection::vec(host_pattern(), 1..3),
        deny in host_pattern(),
        asked in host_pattern(),
    ) {
        let quoted = |v: &[String]| v.iter().map(|h| format!("{h:?}")).collect::<Vec<_>>().join(", ");
        let p = policy(&format!(
            "[[rules]]\nname = \"a\"\ngroups = [\"sre\"]\nprincipals = [\"postgres\"]\nhosts = [{}]\ninteractive = true\nmax_ttl = \"30m\"\n\
             [[rules]]\nname = \"d\"\neffect = \"deny\"\nhosts = [{}]\n",
            quoted(&allow),
            quoted(std::slice::from_ref(&deny)),
        ));
        let Decision::Allow(g) = p.decide(&sre(), &shell_on(&[asked.as_str()]), noon()) else {
            return Ok(());
        };
        proptest::prop_assert_eq!(&g.rule, "a");
        for name in short_names() {
            if !patterns::matches(&asked, &name, Case::Insensitive) {
                continue;
            }
            proptest::prop_assert!(!patterns::matches(&deny, &name, Case::Insensitive), "{} reaches denied {}", asked, name);
            match p.decide(&sre(), &shell_on(&[name.as_str()]), noon()) {
                Decision::Allow(by_name) => proptest::prop_assert_eq!(&by_name.rule, &g.rule),
                Decision::Deny(why) => proptest::prop_assert!(false, "{} granted but its name {} is not: {}", asked, name, why),
            }
        }
    }
}

#[test]
fn command_dimension() {
    let p = policy(RULE);
    let mut r = req();
    r.force_command = Some("/bin/sh".into());
    let why = denied(p.decide(&sre(), &r, noon()));
    assert!(
        why.contains("forced command \"/bin/sh\" is not allowed"),
        "{why}"
    );
    r.force_command = None;
    let why = denied(p.decide(&sre(), &r, noon()));
    assert!(why.contains("interactive shell is not allowed"), "{why}");
    let inter = policy(&RULE.replace("commands = [\"/usr/bin/psql\"]", "interactive = true"));
    let g = allowed(inter.decide(&sre(), &r, noon()));
    assert_eq!(
        g.extensions,
        ["permit-pty"],
        "interactive grants get a pty by default"
    );
    r.force_command = Some("/usr/bin/psql".into());
    denied(inter.decide(&sre(), &r, noon()));
}

#[test]
fn source_address_dimension() {
    let p = policy(RULE);
    let mut r = req();
    r.source_addresses = vec!["192.168.0.0/16".parse().unwrap()];
    let why = denied(p.decide(&sre(), &r, noon()));
    assert!(
        why.contains("source address 192.168.0.0/16 is outside"),
        "{why}"
    );
    r.source_addresses = vec![];
    let why = denied(p.decide(&sre(), &r, noon()));
    assert!(why.contains("requires --source-address"), "{why}");
    r.source_addresses = vec![
        "10.9.9.9/32".parse().unwrap(),
        "10.2.0.0/16".parse().unwrap(),
    ];
    allowed(p.decide(&sre(), &r, noon()));
    let open = policy(&RULE.replace("source_addresses = [\"10.0.0.0/8\"]\n", ""));
    r.source_addresses = vec![];
    allowed(open.decide(&sre(), &r, noon()));
}

#[test]
fn ttl_dimension() {
    let p = policy(RULE);
    let mut r = req();
    r.ttl = Duration::from_secs(1800);
    allowed(p.decide(&sre(), &r, noon()));
    r.ttl = Duration::from_secs(7200);
    let why = denied(p.decide(&sre(), &r, noon()));
    assert_eq!(
        why,
        "TTL 2h exceeds the 30m maximum allowed for postgres@db-* (rule `db`)"
    );
}

#[test]
fn extension_dimension() {
    let p = policy(RULE);
    let mut r = req();
    assert!(
        allowed(p.decide(&sre(), &r, noon())).extensions.is_empty(),
        "commands get no pty by default"
    );
    r.extensions = Some(vec!["permit-port-forwarding".into()]);
    assert_eq!(
        allowed(p.decide(&sre(), &r, noon())).extensions,
        ["permit-port-forwarding"]
    );
    r.extensions = Some(vec!["permit-agent-forwarding".into()]);
    let why = denied(p.decide(&sre(), &r, noon()));
    assert!(
        why.contains("extension permit-agent-forwarding is not allowed"),
        "{why}"
    );
}

#[test]
fn explicit_deny_beats_allow() {
    let deny = r#"
[[rules]]
name = "no-prod-db-7"
effect = "deny"
hosts = ["db-7"]
"#;
    let p = policy(&format!("{RULE}{deny}"));
    let why = denied(p.decide(&sre(), &req(), noon()));
    assert!(
        why.contains("denied by policy rule `no-prod-db-7`"),
        "{why}"
    );
    let mut r = req();
    r.hosts = vec!["db-8".into()];
    allowed(p.decide(&sre(), &r, noon()));
    // A deny rule scoped to a group spares other groups.
    let scoped = policy(&format!(
        "{RULE}{}",
        deny.replace(
            "effect = \"deny\"",
            "effect = \"deny\"\ngroups = [\"contractors\"]"
        )
    ));
    allowed(scoped.decide(&sre(), &req(), noon()));
}

const TIERS: &str = r#"
[[tiers]]
name = "standard"
max_ttl = "8h"

[[tiers]]
name = "high"
approvals = 1
approvers = ["leads"]
max_ttl = "8h"
"#;

#[test]
fn most_restrictive_matching_rule_wins_and_carries_its_tier() {
    let p = policy(&format!(
        "{TIERS}{RULE}{}",
        RULE.replace("name = \"db\"", "name = \"db-long\"\ntier = \"high\"")
            .replace("max_ttl = \"30m\"", "max_ttl = \"4h\"")
    ));
    // Both rules match a 10-minute request: the `high` tier is more restrictive.
    let g = allowed(p.decide(&sre(), &req(), noon()));
    assert_eq!((g.rule.as_str(), g.tier.as_str()), ("db-long", "high"));
    let mut r = req();
    r.ttl = Duration::from_secs(7200);
    let g = allowed(p.decide(&sre(), &r, noon()));
    assert_eq!((g.rule.as_str(), g.tier.as_str()), ("db-long", "high"));
    // Order in the file does not matter, only the tier's rank.
    let p = policy(&format!(
        "{TIERS}{}{RULE}",
        RULE.replace("name = \"db\"", "name = \"db-long\"\ntier = \"high\"")
    ));
    assert_eq!(allowed(p.decide(&sre(), &req(), noon())).tier, "high");
    // Among rules of the same tier, the first wins.
    let p = policy(&format!(
        "{RULE}{}",
        RULE.replace("name = \"db\"", "name = \"db-2\"")
    ));
    assert_eq!(allowed(p.decide(&sre(), &req(), noon())).rule, "db");
}

#[test]
fn time_of_day_dimension() {
    let p = policy(&format!(
        "{TIERS}{}{}",
        RULE.replace("max_ttl", "hours = [\"08:00-18:00\"]\nmax_ttl"),
        RULE.replace("name = \"db\"", "name = \"db-night\"\ntier = \"high\"")
            .replace("max_ttl", "hours = [\"18:00-08:00\"]\nmax_ttl")
    ));
    let at = |h: u64, m: u64| {
        noon() - Duration::from_secs(12 * 3600) + Duration::from_secs(h * 3600 + m * 60)
    };
    assert_eq!(allowed(p.decide(&sre(), &req(), at(9, 0))).rule, "db");
    assert_eq!(allowed(p.decide(&sre(), &req(), at(17, 59))).rule, "db");
    assert_eq!(
        allowed(p.decide(&sre(), &req(), at(18, 0))).rule,
        "db-night"
    );
    assert_eq!(
        allowed(p.decide(&sre(), &req(), at(3, 30))).rule,
        "db-night"
    );
    let only_day = policy(&RULE.replace("max_ttl", "hours = [\"08:00-18:00\"]\nmax_ttl"));
    let why = denied(only_day.decide(&sre(), &req(), at(23, 0)));
    assert!(
        why.contains("only between 08:00-18:00 UTC (it is 23:00 UTC)"),
        "{why}"
    );
    // A deny rule with hours applies only within them.
    let freeze = policy(&format!(
        "{RULE}[[rules]]\nname = \"freeze\"\neffect = \"deny\"\nhosts = [\"db-*\"]\nhours = [\"22:00-23:00\"]\n"
    ));
    allowed(freeze.decide(&sre(), &req(), at(21, 59)));
    let why = denied(freeze.decide(&sre(), &req(), at(22, 30)));
    assert!(why.contains("`freeze`"), "{why}");
}

#[test]
fn tiers_check_reasons_and_tickets() {
    let p = policy(&format!(
        "{}{RULE}",
        TIERS.replace(
            "approvers = [\"leads\"]",
            "approvers = [\"leads\"]\nreason_min_length = 10\nticket_required = true\nticket_pattern = \"(INC|CHG)-[0-9]+\""
        )
    ));
    let high = p.tier("high").unwrap();
    let refused = |reason| {
        let problem = high.check_reason(reason).unwrap_err();
        let kind = problem.kind();
        let e = crate::error::Error::Reason {
            tier: high.name.clone(),
            problem,
        };
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        (kind, e.to_string())
    };
    let (kind, e) = refused("");
    assert_eq!(kind, RefusalKind::Reason);
    assert!(e.contains("requires a reason"), "{e}");
    let (kind, e) = refused("INC-1");
    assert_eq!(kind, RefusalKind::Reason);
    assert!(e.contains("at least 10 characters"), "{e}");
    let (kind, e) = refused("database is down again");
    assert_eq!(kind, RefusalKind::Ticket);
    assert!(
        e.contains("ticket reference matching `(INC|CHG)-[0-9]+`"),
        "{e}"
    );
    high.check_reason("CHG-42 planned failover").unwrap();
    p.tier("standard").unwrap().check_reason("x").unwrap();
    assert!(p.tier("high").unwrap().rank > p.tier("standard").unwrap().rank);
}

/// Tiers for admission: `high` needs an approval, a ticket and allows two emergencies a day
/// of at most 5 minutes; `low` allows no emergency.
const ADMIT: &str = r#"
[[tiers]]
name = "low"
max_ttl = "30m"

[[tiers]]
name = "high"
approvals = 1
approvers = ["leads"]
max_ttl = "1h"
reason_min_length = 5
ticket_required = true
ticket_pattern = "INC-[0-9]+"
emergency = true
emergency_ttl = "5m"
emergency_per_day = 2

[[rules]]
name = "db"
tier = "high"
groups = ["sre"]
principals = ["postgres"]
hosts = ["db-*"]
commands = ["/usr/bin/psql"]
max_ttl = "1h"

[[rules]]
name = "web"
tier = "low"
groups = ["sre"]
principals = ["www"]
hosts = ["web-*"]
interactive = true
max_ttl = "30m"
"#;

fn admitted(a: Result<Admission, crate::error::Error>) -> Admitted {
    match a.expect("no internal error") {
        Admission::Admit(a) => a,
        Admission::Refuse(r) => panic!("refused: {:?} {}", r.kind, r.error),
    }
}

fn refused(a: Result<Admission, crate::error::Error>) -> Refused {
    match a.expect("no internal error") {
        Admission::Admit(a) => panic!("admitted: {a:?}"),
        Admission::Refuse(r) => r,
    }
}

fn db(ttl_secs: u64, reason: &str) -> AccessRequest {
    AccessRequest {
        ttl: Duration::from_secs(ttl_secs),
        reason: reason.into(),
        source_addresses: vec![],
        ..req()
    }
}

#[test]
fn admission_applies_the_tier_after_the_rules() {
    let p = policy(ADMIT);
    let none = |_| unreachable!("no emergency was declared");
    let a = admitted(p.admit(&sre(), &db(600, "INC-42 disk full"), false, noon(), none));
    assert_eq!(
        (a.grant.rule.as_str(), a.grant.tier.as_str()),
        ("db", "high")
    );
    assert_eq!(
        (a.ttl, a.approvals_required, a.approver_groups.as_slice()),
        (Duration::from_secs(600), 1, &["leads".to_owned()][..])
    );
    assert_eq!(a.quota_spent, None);

    // The rules refuse first, naming the rule that came closest and its tier.
    let r = refused(p.admit(&sre(), &db(7200, "INC-42 disk full"), false, noon(), none));
    assert_eq!(r.kind, RefusalKind::Ttl);
    assert_eq!(
        (r.rule.as_deref(), r.tier.as_deref()),
        (Some("db"), Some("high"))
    );
    assert_eq!(
        r.error.to_string(),
        "TTL 2h exceeds the 1h maximum allowed for postgres@db-* (rule `db`)"
    );

    // Then the tier: its reason and ticket rules...
    let r = refused(p.admit(&sre(), &db(600, "disk full again"), false, noon(), none));
    assert_eq!(r.kind, RefusalKind::Ticket);
    assert!(
        r.error.to_string().contains("ticket reference matching"),
        "{}",
        r.error
    );
    let r = refused(p.admit(&sre(), &db(600, "INC"), false, noon(), none));
    assert_eq!(r.kind, RefusalKind::Reason);

    // ...and its longest TTL (the configuration keeps rules within their tier's, so this
    // is the second line of defence: a tier shortened under the rule).
    let mut tiers = p.tiers().to_vec();
    tiers[1].max_ttl = Duration::from_secs(600);
    let p = Policy::new(p.rules().to_vec(), tiers);
    let r = refused(p.admit(&sre(), &db(1200, "INC-42 disk full"), false, noon(), none));
    assert_eq!(r.kind, RefusalKind::Ttl);
    assert_eq!(
        r.error.to_string(),
        "TTL 20m exceeds the 10m maximum of tier `high`"
    );
    assert_eq!(
        (r.rule.as_deref(), r.tier.as_deref()),
        (Some("db"), Some("high"))
    );
}

#[test]
fn an_emergency_skips_approval_within_the_daily_allowance_only() {
    let p = policy(ADMIT);
    let asked = db(1800, "INC-42 primary down");
    let mut since = None;
    let a = admitted(p.admit(&sre(), &asked, true, noon(), |t| {
        since = Some(t);
        1
    }));
    // The allowance counts the last 24 hours.
    assert_eq!(since, Some(noon() - EMERGENCY_WINDOW));
    assert_eq!(
        (a.approvals_required, a.ttl, a.quota_spent),
        (0, Duration::from_secs(300), None),
        "issued at once, capped at the tier's emergency TTL"
    );
    let a = admitted(p.admit(&sre(), &asked, true, noon(), |_| 2));
    assert_eq!(
        (a.approvals_required, a.ttl, a.quota_spent),
        (1, Duration::from_secs(1800), Some((2, 2))),
        "spent: the tier's normal approvals and TTL"
    );

    // A tier without emergency self-service refuses the declaration.
    let web = AccessRequest {
        principals: vec!["www".into()],
        hosts: vec!["web-1".into()],
        force_command: None,
        ..asked
    };
    let r = refused(p.admit(&sre(), &web, true, noon(), |_| 0));
    assert_eq!(r.kind, RefusalKind::EmergencyNotAllowed);
    assert_eq!(
        r.error.to_string(),
        "emergency access is not allowed for tier `low` (www@web-1, rule `web`); ask without --emergency"
    );
    admitted(p.admit(&sre(), &web, false, noon(), |_| 0));
}

#[test]
fn a_login_made_with_an_ssh_key_reaches_only_what_the_tier_takes() {
    let p = policy(ADMIT);
    let key_login = Caller {
        ssh_key_login: true,
        ..sre()
    };
    let none = |_| 0;
    // By default (emergency-only): a declared emergency is admitted, issued at once...
    let a = admitted(p.admit(&key_login, &db(600, "INC-42 disk full"), true, noon(), none));
    assert_eq!((a.grant.tier.as_str(), a.approvals_required), ("high", 0));
    // ...a normal request is refused, saying what to do...
    let r = refused(p.admit(
        &key_login,
        &db(600, "INC-42 disk full"),
        false,
        noon(),
        none,
    ));
    assert_eq!(r.kind, RefusalKind::LoginMethod);
    assert_eq!(r.tier.as_deref(), Some("high"));
    assert_eq!(
        r.error.to_string(),
        "this login was made with an SSH key (the break-glass login); tier `high` takes it \
         only for a declared emergency (--emergency): run `breakglass login` to log in with SSO"
    );
    // ...and a tier without emergencies needs an SSO login.
    let web = AccessRequest {
        principals: vec!["www".into()],
        hosts: vec!["web-1".into()],
        force_command: None,
        ..db(600, "INC-42 disk full")
    };
    let r = refused(p.admit(&key_login, &web, false, noon(), none));
    assert_eq!(r.kind, RefusalKind::LoginMethod);
    assert!(
        r.error
            .to_string()
            .contains("tier `low` needs an SSO login"),
        "{}",
        r.error
    );
    // An SSO login is not concerned.
    admitted(p.admit(&sre(), &web, false, noon(), none));
    // "any" takes it like an SSO login; "off" takes not even an emergency.
    let mut tiers = p.tiers().to_vec();
    tiers[0].ssh_key_login = SshKeyLogin::Any;
    tiers[1].ssh_key_login = SshKeyLogin::Off;
    let p = Policy::new(p.rules().to_vec(), tiers);
    admitted(p.admit(&key_login, &web, false, noon(), none));
    let r = refused(p.admit(&key_login, &db(600, "INC-42 disk full"), true, noon(), none));
    assert!(
        r.error
            .to_string()
            .contains("tier `high` needs an SSO login"),
        "{}",
        r.error
    );
    // The configuration spells the three values, and nothing else.
    assert_eq!(SshKeyLogin::parse("any"), Ok(SshKeyLogin::Any));
    assert_eq!(
        SshKeyLogin::parse("emergency-only"),
        Ok(SshKeyLogin::EmergencyOnly)
    );
    assert!(
        SshKeyLogin::parse("sometimes")
            .unwrap_err()
            .contains("emergency-only")
    );
}
