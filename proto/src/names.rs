//! Syntax of the names that travel in certificates: Unix principals, host
//! names and host-name patterns. The daemon refuses what these reject; the
//! PAM module relies on certificates holding nothing else.

/// Longest Unix account name accepted as a principal (Linux `LOGIN_NAME_MAX` is 256,
/// useradd's default limit is 32).
pub const MAX_PRINCIPAL_LEN: usize = 32;
/// Longest host name or pattern (DNS limit).
pub const MAX_HOST_LEN: usize = 253;

/// Checks that `name` is a portable Unix account name:
/// `[A-Za-z0-9_.-]`, not starting with `-` or `.`, at most 32 bytes.
pub fn check_principal(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("principal is empty".into());
    }
    if name.len() > MAX_PRINCIPAL_LEN {
        return Err(format!(
            "principal is {} bytes long; Unix account names have at most {MAX_PRINCIPAL_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "principal {:?} contains {c:?}; use letters, digits, '_', '.' and '-' only",
            name.escape_debug().to_string()
        ));
    }
    if name.starts_with(['-', '.']) {
        return Err(format!("principal {name:?} must not start with '-' or '.'"));
    }
    Ok(())
}

/// Checks a host name or host-name pattern for the certificate's host scope:
/// `[A-Za-z0-9.-_]` plus the glob characters `*` and `?`, at most 253 bytes.
pub fn check_host_pattern(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("host name is empty".into());
    }
    if host.len() > MAX_HOST_LEN {
        return Err(format!(
            "host name is {} bytes long; the limit is {MAX_HOST_LEN}",
            host.len()
        ));
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*' | '?')))
    {
        return Err(format!(
            "host {:?} contains {c:?}; use letters, digits, '.', '-', '_' and the wildcards '*' '?'",
            host.escape_debug().to_string()
        ));
    }
    Ok(())
}

/// True when `host` matches `pattern` (`*` any run of characters, `?` one; ASCII
/// case-insensitive, as host names are): the host-scope check of the PAM module. What
/// the daemon grants is decided against this same matcher ([`crate::patterns`]).
#[must_use]
pub fn host_matches(pattern: &str, host: &str) -> bool {
    crate::patterns::matches(pattern, host, crate::patterns::Case::Insensitive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals() {
        assert!(check_principal("postgres").is_ok());
        assert!(check_principal("svc_app-1.x").is_ok());
        for bad in [
            "",
            "a,b",
            "a\nb",
            "*",
            "a\0b",
            "-x",
            ".x",
            "a b",
            &"x".repeat(33),
        ] {
            assert!(check_principal(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hosts() {
        assert!(check_host_pattern("db-7.prod.example.com").is_ok());
        assert!(check_host_pattern("db-*").is_ok());
        for bad in ["", "a,b", "a b", "[ab]", "a\0", &"h".repeat(254)] {
            assert!(check_host_pattern(bad).is_err(), "{bad:?} accepted");
        }
        assert!(host_matches("db-*", "DB-7"));
        assert!(host_matches("db-?", "db-7"));
        assert!(!host_matches("db-*", "web-1"));
        assert!(!host_matches("db-7", "db-70"));
        assert!(host_matches("*", "anything.example.com"));
    }
}
