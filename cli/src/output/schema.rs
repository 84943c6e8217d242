//! The documented shape of each command's JSON output: one [`Schema`] per command, the
//! source of the JSON OUTPUT section of its man page (`xtask/src/man.rs`) and of the
//! check that the JSON the command prints has exactly these fields with these types
//! ([`check`], run against the real daemon by `tests/tests/cli_json.rs`).
//!
//! Field names are stable and snake_case; times are RFC 3339 in UTC, whole seconds;
//! durations are whole seconds. A field is never left out: when it has no value it is
//! `null` (its type says "or null").
#![forbid(unsafe_code)]

use serde_json::Value;

/// The type of a JSON value.
#[derive(Debug, Clone, Copy)]
pub enum Type {
    /// A string.
    String,
    /// An integer.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A time: an RFC 3339 string in UTC, whole seconds (`2026-12-06T12:00:00Z`).
    Time,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// An array of values of one type.
    Array(&'static Type),
    /// An object with exactly these fields.
    Object(&'static [Field]),
    /// A value of the type, or `null`.
    Nullable(&'static Type),
}

/// One field of an object.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Its name (snake_case).
    pub name: &'static str,
    /// Its type.
    pub ty: Type,
    /// What it holds.
    pub doc: &'static str,
}

/// The JSON output of one command.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The command as typed after `breakglass` (`review list`, `host doctor`).
    pub command: &'static str,
    /// What the output is.
    pub doc: &'static str,
    /// The fields of the top-level object.
    pub fields: &'static [Field],
}

impl Schema {
    /// The man page the schema is documented in (`breakglass-review-list`).
    #[must_use]
    pub fn page(&self) -> String {
        format!("breakglass-{}", self.command.replace(' ', "-"))
    }

    /// Checks that `value` is an object with exactly the documented fields and types.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        check(value, &Type::Object(self.fields), "")
    }

    /// Every field, flattened: (path, type, doc); array elements are `name[].field`. An
    /// object type met a second time is not spelled out again: its row says where it was.
    #[must_use]
    pub fn rows(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        rows(self.fields, "", &mut Vec::new(), &mut out);
        out
    }
}

/// Object types already spelled out, by their field names, and where.
type Seen = Vec<(Vec<&'static str>, String)>;

fn rows(
    fields: &'static [Field],
    prefix: &str,
    seen: &mut Seen,
    out: &mut Vec<(String, String, String)>,
) {
    for f in fields {
        let path = format!("{prefix}{}", f.name);
        let row = out.len();
        out.push((path.clone(), type_name(&f.ty), f.doc.to_owned()));
        let mut ty = &f.ty;
        let mut suffix = String::new();
        loop {
            match ty {
                Type::Nullable(t) => ty = t,
                Type::Array(t) => {
                    suffix.push_str("[]");
                    ty = t;
                }
                _ => break,
            }
        }
        if let Type::Object(inner) = ty {
            let here = format!("{path}{suffix}");
            let names: Vec<&str> = inner.iter().map(|f| f.name).collect();
            match seen.iter().find(|(n, _)| *n == names) {
                Some((_, first)) => out[row].2.push_str(&format!(" (fields as {first})")),
                None => {
                    seen.push((names, here.clone()));
                    rows(inner, &format!("{here}."), seen, out);
                }
            }
        }
    }
}

/// How the man page names a type.
#[must_use]
pub fn type_name(ty: &Type) -> String {
    match ty {
        Type::String => "string".into(),
        Type::Integer => "integer".into(),
        Type::Boolean => "boolean".into(),
        Type::Time => "time".into(),
        Type::OneOf(v) => format!("one of {}", v.join(", ")),
        Type::Array(t) => format!("array of {}", type_name(t)),
        Type::Object(_) => "object".into(),
        Type::Nullable(t) => format!("{} or null", type_name(t)),
    }
}

/// Checks `value` against `ty`; `path` names where it is, for the error.
pub fn check(value: &Value, ty: &Type, path: &str) -> Result<(), String> {
    let here = if path.is_empty() { "the output" } else { path };
    let wrong = || Err(format!("{here}: expected {}, found {value}", type_name(ty)));
    match (ty, value) {
        (Type::Nullable(_), Value::Null) => Ok(()),
        (Type::Nullable(t), v) => check(v, t, path),
        (Type::String, Value::String(_)) | (Type::Boolean, Value::Bool(_)) => Ok(()),
        (Type::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(()),
        (Type::Time, Value::String(s)) if is_rfc3339_seconds(s) => Ok(()),
        (Type::OneOf(names), Value::String(s)) if names.contains(&s.as_str()) => Ok(()),
        (Type::Array(t), Value::Array(items)) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check(v, t, &format!("{path}[{i}]"))),
        (Type::Object(fields), Value::Object(map)) => {
            for f in *fields {
                let at = if path.is_empty() {
                    f.name.to_owned()
                } else {
                    format!("{path}.{}", f.name)
                };
                let v = map
                    .get(f.name)
                    .ok_or_else(|| format!("{at}: documented but missing"))?;
                check(v, &f.ty, &at)?;
            }
            match map.keys().find(|k| !fields.iter().any(|f| f.name == *k)) {
                Some(k) => Err(format!("{here}: field {k:?} is not documented")),
                None => Ok(()),
            }
        }
        _ => wrong(),
    }
}

/// An RFC 3339 time in UTC with whole seconds, as [`super::time`] writes it.
fn is_rfc3339_seconds(s: &str) -> bool {
    s.len() == 20 && s.ends_with('Z') && humantime::parse_rfc3339(s).is_ok()
}

const S: Type = Type::String;
const I: Type = Type::Integer;
const B: Type = Type::Boolean;
const T: Type = Type::Time;
const STRINGS: Type = Type::Array(&Type::String);
const OPT_STRING: Type = Type::Nullable(&Type::String);
const OPT_TIME: Type = Type::Nullable(&Type::Time);

const fn f(name: &'static str, ty: Type, doc: &'static str) -> Field {
    Field { name, ty, doc }
}

/// The states of a request.
pub const REQUEST_STATES: &[&str] = &[
    "pending",
    "approved",
    "issued",
    "denied",
    "expired",
    "cancelled",
    "unknown",
];

/// A certificate written next to the key (`request`, `fetch`).
pub const CERTIFICATE: &[Field] = &[
    f(
        "certificate_file",
        S,
        "where the certificate was written (<key>-cert.pub)",
    ),
    f("private_key_file", S, "the private key it goes with"),
    f("request_id", S, "the request it answers (r-…)"),
    f(
        "grant_id",
        S,
        "the grant (g-…), also in the certificate's key id",
    ),
    f("serial", I, "the certificate serial"),
    f("key_id", S, "the certificate key id"),
    f("tier", S, "risk tier of the rule that allowed it"),
    f("rule", S, "the policy rule that allowed it"),
    f("principals", STRINGS, "Unix accounts it is valid for"),
    f("extensions", STRINGS, "permit-* extensions granted"),
    f("approvers", STRINGS, "identities that approved the request"),
    f(
        "emergency",
        B,
        "issued as a declared emergency (to be reviewed)",
    ),
    f(
        "valid_after",
        T,
        "start of validity (backdated for clock skew)",
    ),
    f("valid_before", T, "end of validity"),
    f(
        "expires_in_seconds",
        I,
        "seconds from now until valid_before",
    ),
    f(
        "ssh_command",
        S,
        "an ssh command line that logs in with it (fetch: HOST stands for the host)",
    ),
    f(
        "added_to_agent",
        B,
        "the key and certificate were added to ssh-agent",
    ),
];

/// One approval of a request.
pub const APPROVAL: &[Field] = &[
    f("approver", S, "who approved"),
    f("comment", S, "their note"),
    f("at", T, "when"),
];

/// A request as the daemon shows it (`show`, `approve`, `deny`, `cancel`, `pending`).
pub const REQUEST: &[Field] = &[
    f("request_id", S, "r-…"),
    f(
        "state",
        Type::OneOf(REQUEST_STATES),
        "where the request stands",
    ),
    f("requester", S, "who asked"),
    f("principals", STRINGS, "Unix accounts asked for"),
    f("hosts", STRINGS, "hosts or host patterns asked for"),
    f(
        "command",
        OPT_STRING,
        "forced command; null for an interactive shell",
    ),
    f("reason", S, "why"),
    f("tier", S, "risk tier"),
    f("rule", S, "the policy rule that matched"),
    f("emergency", B, "declared an emergency"),
    f("ttl_seconds", I, "lifetime asked for"),
    f("approvals_required", I, "distinct approvals needed"),
    f("approver_groups", STRINGS, "groups approvals may come from"),
    f(
        "approvals",
        Type::Array(&Type::Object(APPROVAL)),
        "approvals so far",
    ),
    f("created_at", T, "when it was made"),
    f("expires_at", T, "when it expires unless approved"),
    f(
        "seconds_left",
        I,
        "seconds until a pending request expires (0 when not pending)",
    ),
    f("grant_id", OPT_STRING, "the grant, once issued"),
    f(
        "decided_by",
        OPT_STRING,
        "who ended it (denied, cancelled, expired)",
    ),
    f("decision_reason", OPT_STRING, "why it was ended"),
    f("approve_command", S, "the command an approver runs"),
    f("can_approve", B, "you may approve it now"),
];

/// One live grant (`status`).
pub const GRANT: &[Field] = &[
    f("grant_id", S, "g-…"),
    f("request_id", S, "the request it answers"),
    f("requester", S, "the identity that requested it"),
    f("hosts", STRINGS, "hosts or host patterns it is valid on"),
    f("principals", STRINGS, "Unix accounts it is valid for"),
    f(
        "command",
        OPT_STRING,
        "forced command; null for an interactive shell",
    ),
    f("tier", S, "risk tier"),
    f("rule", S, "the policy rule that allowed it"),
    f("serial", I, "certificate serial"),
    f("emergency", B, "issued as a declared emergency"),
    f("valid_after", T, "start of validity"),
    f("valid_before", T, "end of validity"),
    f(
        "expires_in_seconds",
        I,
        "seconds from now until valid_before",
    ),
    f(
        "source_addresses",
        STRINGS,
        "CIDR blocks it may be used from (empty: any)",
    ),
    f("extensions", STRINGS, "permit-* extensions"),
];

/// The client certificate's validity (`status`).
pub const CREDENTIAL: &[Field] = &[
    f("certificate_file", S, "your client certificate (--cert)"),
    f(
        "expires_at",
        T,
        "its notAfter: after it, the daemon refuses you",
    ),
    f(
        "expires_in_seconds",
        I,
        "seconds from now until expires_at (negative once expired)",
    ),
    f(
        "ssh_key_login",
        B,
        "it came from the break-glass login with an SSH key (login --ssh-key): each tier takes it as its ssh_key_login says",
    ),
];

/// A host session of a grant (`review`).
pub const SESSION: &[Field] = &[
    f("host", S, "the host that reported it"),
    f("principal", S, "the Unix account"),
    f("session_id", S, "the host's session id"),
    f(
        "remote_addr",
        OPT_STRING,
        "where the login came from, when known",
    ),
    f("opened_at", OPT_TIME, "when it opened, when known"),
    f(
        "closed_at",
        OPT_TIME,
        "when it closed; null while open or unknown",
    ),
    f(
        "ended",
        Type::Nullable(&Type::OneOf(&["expired", "revoked", "denied"])),
        "set when breakglass ended it",
    ),
    f(
        "recording",
        Type::Nullable(&Type::OneOf(&["expected", "stored", "deleted"])),
        "its recording: committed to by its close record (expected), stored on the daemon, or deleted by retention; null when not recorded",
    ),
    f(
        "recording_hash",
        OPT_STRING,
        "the recording's chain hash, sha256:<hex>, from its close record",
    ),
    f(
        "recording_bytes",
        Type::Nullable(&Type::Integer),
        "the recording's size in bytes",
    ),
    f(
        "recording_duration_ms",
        Type::Nullable(&Type::Integer),
        "the recording's duration in milliseconds",
    ),
];

/// A verdict on an emergency grant.
pub const VERDICT: &[Field] = &[
    f(
        "verdict",
        Type::OneOf(&["ok", "misuse"]),
        "the reviewer's verdict",
    ),
    f("reviewer", S, "who reviewed"),
    f("note", S, "what they checked or found"),
    f("reviewed_at", T, "when"),
];

/// An emergency grant under review (`review`, `review list`).
pub const REVIEW: &[Field] = &[
    f("grant_id", S, "g-…"),
    f("request_id", S, "r-…"),
    f("requester", S, "who asked"),
    f("principals", STRINGS, "Unix accounts"),
    f("hosts", STRINGS, "hosts or host patterns"),
    f(
        "command",
        OPT_STRING,
        "forced command; null for an interactive shell",
    ),
    f("reason", S, "why access was asked for"),
    f("tier", S, "risk tier"),
    f("serial", I, "certificate serial"),
    f("valid_after", T, "start of validity"),
    f("valid_before", T, "end of validity"),
    f("emergency", B, "issued as a declared emergency"),
    f(
        "sessions",
        Type::Array(&Type::Object(SESSION)),
        "host sessions reported for it",
    ),
    f(
        "review",
        Type::Nullable(&Type::Object(VERDICT)),
        "the review; null while unreviewed",
    ),
];

/// A revoked grant (`revoke`).
pub const REVOKED: &[Field] = &[
    f("grant_id", S, "g-…"),
    f("serial", I, "certificate serial"),
    f("requester", S, "whose grant it was"),
    f(
        "audit_index",
        I,
        "index of the grant_revoked event in the audit log",
    ),
];

/// A CA public key (`ca-keys`).
pub const CA_KEY: &[Field] = &[
    f(
        "public_key",
        S,
        "OpenSSH public key line (a TrustedUserCAKeys entry)",
    ),
    f("fingerprint", S, "SHA256:… fingerprint"),
    f("signing", B, "the key that signs new certificates"),
];

/// A finding of `host doctor`.
pub const FINDING: &[Field] = &[
    f("level", Type::OneOf(&["ok", "warn", "fail"]), "how bad"),
    f("area", S, "which part: daemon, sshd, pam, …"),
    f("message", S, "what was found"),
    f(
        "fix",
        OPT_STRING,
        "the command or config line that fixes it",
    ),
];

/// The JSON output of every command that has one.
pub const SCHEMAS: &[Schema] = &[
    Schema {
        command: "request",
        doc: "The request and, once issued, the certificate. Progress (the approval wait) goes to standard error.",
        fields: &[
            f(
                "state",
                Type::OneOf(&["issued", "pending"]),
                "issued: the certificate was written; pending: waiting for approval (--no-wait)",
            ),
            f("request_id", S, "r-…"),
            f(
                "certificate",
                Type::Nullable(&Type::Object(CERTIFICATE)),
                "the certificate, when issued",
            ),
            f(
                "request",
                Type::Nullable(&Type::Object(REQUEST)),
                "the pending request, when not issued",
            ),
        ],
    },
    Schema {
        command: "fetch",
        doc: "The certificate written next to the key.",
        fields: CERTIFICATE,
    },
    Schema {
        command: "pending",
        doc: "Pending requests you may approve, and your own.",
        fields: &[f(
            "requests",
            Type::Array(&Type::Object(REQUEST)),
            "the requests",
        )],
    },
    Schema {
        command: "show",
        doc: "The request.",
        fields: REQUEST,
    },
    Schema {
        command: "approve",
        doc: "The request after your approval.",
        fields: REQUEST,
    },
    Schema {
        command: "deny",
        doc: "The request after the denial.",
        fields: REQUEST,
    },
    Schema {
        command: "cancel",
        doc: "The request after it was withdrawn.",
        fields: REQUEST,
    },
    Schema {
        command: "whoami",
        doc: "Who the daemon sees.",
        fields: WHOAMI,
    },
    Schema {
        command: "status",
        doc: "Who you are, your client certificate's expiry, your live grants and your pending requests.",
        fields: &[
            f("identity", S, "the identity the daemon sees"),
            f("groups", STRINGS, "its groups"),
            f("transport", TRANSPORT, "how you authenticated"),
            f(
                "credential",
                Type::Nullable(&Type::Object(CREDENTIAL)),
                "your client certificate's expiry; null on the admin socket",
            ),
            f(
                "grants",
                Type::Array(&Type::Object(GRANT)),
                "your live grants (issued, not revoked, not expired), soonest to expire first",
            ),
            f(
                "pending",
                Type::Array(&Type::Object(REQUEST)),
                "your own pending requests",
            ),
            f(
                "awaiting_my_approval",
                Type::Array(&Type::Object(REQUEST)),
                "others' pending requests you may approve now",
            ),
        ],
    },
    Schema {
        command: "review",
        doc: "The grant with the verdict just recorded.",
        fields: REVIEW,
    },
    Schema {
        command: "review list",
        doc: "Emergency grants awaiting review (with --all, also reviewed ones).",
        fields: &[f(
            "grants",
            Type::Array(&Type::Object(REVIEW)),
            "the grants",
        )],
    },
    Schema {
        command: "revoke",
        doc: "What was revoked and whether the KRL that lists it is published. Printed also when the command exits 69 (recorded, KRL not published).",
        fields: &[
            f(
                "revoked",
                Type::Array(&Type::Object(REVOKED)),
                "grants revoked now",
            ),
            f(
                "already_revoked",
                STRINGS,
                "grant ids that were revoked before",
            ),
            f(
                "krl_published",
                B,
                "a KRL that lists the revocations is published",
            ),
            f("krl_version", I, "its version (0 when not published)"),
            f(
                "served_krl_version",
                I,
                "the KRL hosts get meanwhile, when not published (0: none)",
            ),
            f(
                "krl_not_published_reason",
                OPT_STRING,
                "why it is not published",
            ),
            f(
                "revoked_key_fingerprint",
                OPT_STRING,
                "with --public-key: the key revoked for good",
            ),
        ],
    },
    Schema {
        command: "ca-keys",
        doc: "The CA public keys, the signing key first.",
        fields: &[
            f("keys", Type::Array(&Type::Object(CA_KEY)), "the keys"),
            f(
                "written_to",
                OPT_STRING,
                "with --out: the file they were written to",
            ),
        ],
    },
    Schema {
        command: "host doctor",
        doc: "Every check's finding. Printed also when the command exits 78 (a check failed).",
        fields: &[
            f("passed", B, "no check failed"),
            f("failures", I, "how many findings are fail"),
            f("warnings", I, "how many findings are warn"),
            f(
                "findings",
                Type::Array(&Type::Object(FINDING)),
                "the findings, in order",
            ),
        ],
    },
];

const TRANSPORT: Type = Type::OneOf(&["mtls", "unix"]);

/// `whoami`.
pub const WHOAMI: &[Field] = &[
    f(
        "identity",
        S,
        "the identity from your client certificate (or the Unix peer)",
    ),
    f("groups", STRINGS, "its groups in the daemon's config"),
    f("transport", TRANSPORT, "how you authenticated"),
    f(
        "server_time",
        OPT_TIME,
        "the daemon's clock when it answered",
    ),
];

/// The schema of `command` (`review list`), if it prints JSON.
#[must_use]
pub fn schema(command: &str) -> Option<&'static Schema> {
    SCHEMAS.iter().find(|s| s.command == command)
}

/// The schema documented in the man page `page` (`breakglass-review-list`).
#[must_use]
pub fn schema_of_page(page: &str) -> Option<&'static Schema> {
    SCHEMAS.iter().find(|s| s.page() == page)
}

#[cfg(test)]
mod tests;
