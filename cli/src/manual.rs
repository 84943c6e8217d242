//! What `breakglass(1)` says beyond `--help`: EXAMPLES (each one parsed by the real
//! command line in the tests) and FILES. `xtask` renders them into the man pages.
#![forbid(unsafe_code)]

/// An example command line: what it does, and its arguments after `breakglass`.
pub type Example = (&'static str, &'static [&'static str]);

/// The examples, each shown on the page of the command it runs and on `breakglass(1)`.
#[rustfmt::skip]
pub const EXAMPLES: &[Example] = &[
    (
        "Ask for ten minutes as bgdemo on db-1; waits for approval when the tier needs it, \
         then writes ~/.ssh/id_ed25519-cert.pub and prints the ssh command:",
        &["request", "--host", "db-1.prod.example", "--as", "bgdemo", "--ttl", "10m", "--reason", "INC-4411 primary down"],
    ),
    (
        "Declare an emergency: issued at once, alerts sent, reviewed afterwards:",
        &["request", "--host", "db-1.prod.example", "--as", "root", "--ttl", "15m", "--reason", "INC-4412 data loss in progress", "--emergency"],
    ),
    (
        "Ask without waiting, then pick the certificate up once approved:",
        &["request", "--host", "web-1.staging.example", "--as", "deploy", "--ttl", "30m", "--reason", "CHG-77 deploy", "--no-wait"],
    ),
    ("Pick up the certificate of an approved request:", &["fetch", "r-0123456789abcdef"]),
    ("As an approver: list what waits for you, then approve one:", &["pending"]),
    ("", &["approve", "r-0123456789abcdef", "--comment", "checked with the incident lead"]),
    ("Withdraw your own request:", &["cancel", "r-0123456789abcdef", "--reason", "fixed without access"]),
    (
        "Log in with your organisation's identity provider (device flow: open the URL it prints \
         anywhere, enter the code), pinning the daemon's CA by the fingerprint your administrator gave:",
        &["--server", "https://ca.example.internal:7443", "login", "--ca-fingerprint", "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"],
    ),
    (
        "The break-glass login, when the identity provider is down: sign the daemon's challenge \
         with your enrolled SSH key (a FIDO2 key asks for a touch), then declare the emergency:",
        &["login", "--ssh-key", "~/.ssh/id_ed25519_sk"],
    ),
    ("", &["request", "--emergency", "--host", "db-7.prod.example", "--as", "postgres", "--ttl", "15m", "--reason", "INC-4411 primary down, SSO down"]),
    ("Show who you are to the daemon, with which groups:", &["whoami"]),
    (
        "On a host: install the CA keys that sshd's TrustedUserCAKeys and the PAM module's \
         ca_keys name:",
        &["--config", "/etc/breakglass/host.toml", "ca-keys", "--out", "/etc/ssh/breakglass_user_ca.pub"],
    ),
    ("Revoke a grant: hosts end its sessions within seconds:", &["revoke", "--grant", "g-0123456789abcdef", "--reason", "laptop stolen"]),
    ("Review emergency grants:", &["review", "list"]),
    ("", &["review", "g-0123456789abcdef", "--verdict", "ok", "--note", "matches INC-4412"]),
    ("Check a host's set-up (sshd, PAM stack, KRL, spool, daemon):", &["--config", "/etc/breakglass/host.toml", "host", "doctor"]),
    ("Print the bash completion script; load it with source <(breakglass completions bash):", &["completions", "bash"]),
    ("Log in, asking for a certificate only when the one next to your key does not cover the login:", &["ssh", "--ttl", "15m", "--reason", "INC-4411 primary down", "postgres@db-7.prod.example"]),
    ("Make plain ssh, scp and rsync use a valid breakglass certificate (an Include in ~/.ssh/config, with a backup):", &["config", "ssh", "--install"]),
    (
        "On a new host, as root: enroll with a join token from breakglass-ca token create, pinning the CA by the fingerprint it printed:",
        &["--server", "https://ca.example.internal:7443", "host", "enroll", "--token", "bgjoin_AAAA", "--ca-fingerprint", "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"],
    ),
    ("Renew the host's certificate now, without waiting for two thirds of its lifetime:", &["--config", "/etc/breakglass/host.toml", "host", "renew", "--force"]),
];

/// Files `breakglass` reads or writes, and what they are.
pub const FILES: &[(&str, &str)] = &[
    (
        "~/.config/breakglass/client.toml",
        "Client config: server, ca_cert, cert, key, server_name ($XDG_CONFIG_HOME/breakglass/client.toml when set). Flags and BREAKGLASS_* variables win over it. breakglass login writes it (only when absent or written by an earlier login), with login.key (0600), login.crt and ca.crt beside it.",
    ),
    (
        "~/.ssh/id_ed25519.pub, ~/.ssh/id_ecdsa.pub, ~/.ssh/id_rsa.pub",
        "The public key request and fetch use when --public-key is not given (the first that exists).",
    ),
    (
        "KEY-cert.pub",
        "The certificate, written next to the key (~/.ssh/id_ed25519-cert.pub for ~/.ssh/id_ed25519.pub), mode 0644, atomically.",
    ),
    (
        "/etc/breakglass/host.toml",
        "A host's client config (its host://NAME certificate, audit_key), for the host commands; host enroll writes it with host.key (0600), host.crt, ca.crt and log.pub beside it, host renew replaces the key and certificate.",
    ),
    (
        "/etc/ssh/breakglass_user_ca.pub",
        "The CA keys (ca-keys --out), named by sshd's TrustedUserCAKeys and the PAM module's ca_keys.",
    ),
    (
        "/etc/ssh/breakglass_revoked.krl",
        "The KRL (host sync-krl --out), named by sshd's RevokedKeys and the PAM module's krl.",
    ),
    (
        breakglass_proto::spool::DEFAULT_DIR,
        "Session records the PAM module writes and host ship delivers.",
    ),
    (
        breakglass_proto::sessions::DEFAULT_DIR,
        "Open sessions on a host, which host watch-revocations ends on revocation.",
    ),
    (
        "/usr/share/bash-completion/completions/breakglass, /usr/share/zsh/vendor-completions/_breakglass, /usr/share/fish/vendor_completions.d/breakglass.fish",
        "Shell completions installed by the package (breakglass completions SHELL).",
    ),
];

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    #[test]
    fn every_example_is_accepted_by_the_command_line() {
        for (what, args) in EXAMPLES {
            let argv = std::iter::once("breakglass").chain(args.iter().copied());
            if let Err(e) = Cli::try_parse_from(argv) {
                panic!("example {what:?} ({args:?}) does not parse:\n{e}");
            }
        }
    }
}
