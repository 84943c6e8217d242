//! `breakglass host enable-pam` / `disable-pam`: put `pam_breakglass.so` into sshd's PAM
//! session stack (`/etc/pam.d/sshd`) and take it out again.
//!
//! Where the line goes, and why:
//! - **after** `session ... pam_loginuid.so`: the module needs the audit session id
//!   pam_loginuid assigns (the guard finds every process of the session by it);
//! - **before** `@include common-session` (or any other session include) and before
//!   every `session ... pam_env.so` line: `pam_env user_readenv=1` lets a user's
//!   `~/.pam_environment` overwrite `SSH_AUTH_INFO_0`, where the module reads the
//!   certificate.
//!
//! The line is inserted directly after the pam_loginuid line. The module is never put into
//! `common-session`: every `su`, `cron` and `sudo` session would run it.
//!
//! Files are changed atomically (temporary file in the same directory, fsync, rename) with
//! the original's mode and owner, after a copy of the original is written to
//! `<file>.breakglass-bak` (one fixed name: it always holds the file as it was before the
//! last change; the package's prerm uses the same name).
//!
//! Three files: `parse.rs` reads PAM files ([`rules`] is the CLI's one reader of PAM rule
//! lines, [`Placement::judge`] the one judgement of where the module's line sits; `host
//! doctor` builds its session stack on both); `edit.rs` plans the new text ([`plan_enable`],
//! [`plan_disable`], pure); this file reads and writes the files and runs the commands.
#![forbid(unsafe_code)]

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::CliError;

mod edit;
mod parse;
#[cfg(test)]
mod tests;

pub use edit::*;
pub use parse::*;

/// sshd's PAM service file on Debian.
pub const DEFAULT_PAM_FILE: &str = "/etc/pam.d/sshd";
/// The module as named in a PAM rule (PAM looks it up in the multiarch security directory).
pub const DEFAULT_MODULE: &str = "pam_breakglass.so";
/// Module options: the files the sshd_config.d snippet names (packaging/sshd/breakglass.conf).
pub const DEFAULT_OPTIONS: &str =
    "ca_keys=/etc/ssh/breakglass_user_ca.pub krl=/etc/ssh/breakglass_revoked.krl";
/// Suffix of the backup written before every change.
pub const BACKUP_SUFFIX: &str = ".breakglass-bak";
/// Largest PAM file read.
const MAX_PAM_FILE: u64 = 256 * 1024;

/// `breakglass host enable-pam`.
#[derive(Debug, Args, Clone)]
pub struct EnablePamArgs {
    /// sshd's PAM service file
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PAM_FILE)]
    pub pam_file: PathBuf,
    /// The module, as PAM rules name it
    #[arg(long, value_name = "MODULE", default_value = DEFAULT_MODULE)]
    pub module: String,
    /// Module options (one string; see pam_breakglass(8))
    #[arg(long, value_name = "OPTIONS", default_value = DEFAULT_OPTIONS, allow_hyphen_values = true)]
    pub options: String,
    /// Show the change as a diff and write nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `breakglass host disable-pam`.
#[derive(Debug, Args, Clone)]
pub struct DisablePamArgs {
    /// sshd's PAM service file
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PAM_FILE)]
    pub pam_file: PathBuf,
    /// The module, as PAM rules name it
    #[arg(long, value_name = "MODULE", default_value = DEFAULT_MODULE)]
    pub module: String,
    /// Show the change as a diff and write nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// Reads a PAM file: a regular file (not a symlink, which an atomic rename would replace),
/// of sane size.
fn read_pam_file(path: &Path) -> Result<(String, std::fs::Metadata), CliError> {
    let p = path.display();
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        CliError::Io(format!(
            "cannot read {p}: {e}; give sshd's PAM file with --pam-file"
        ))
    })?;
    if meta.file_type().is_symlink() {
        return Err(CliError::Usage(format!(
            "{p} is a symlink; run again with --pam-file set to the file it points to"
        )));
    }
    if !meta.is_file() {
        return Err(CliError::Usage(format!("{p} is not a regular file")));
    }
    if meta.len() > MAX_PAM_FILE {
        return Err(CliError::Usage(format!(
            "{p} is {} bytes, larger than any PAM file should be; check it",
            meta.len()
        )));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| CliError::Io(format!("cannot read {p}: {e}")))?;
    Ok((text, meta))
}

/// Writes `bytes` to `path` atomically with `meta`'s mode and owner.
fn write_like(path: &Path, bytes: &[u8], meta: &std::fs::Metadata) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.breakglass-tmp{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        // Owner first: chown clears set-id bits, chmod then sets the exact mode.
        std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()))?;
        f.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The backup path of `file`.
#[must_use]
pub fn backup_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(BACKUP_SUFFIX);
    PathBuf::from(s)
}

/// Applies `plan` to `file` (backup, then atomic write) or prints its diff; returns what
/// to print.
fn apply(
    file: &Path,
    text: &str,
    meta: &std::fs::Metadata,
    plan: Plan,
    dry_run: bool,
) -> Result<String, CliError> {
    let Some(new_text) = plan.new_text else {
        return Ok(plan.message);
    };
    let p = file.display();
    if dry_run {
        return Ok(format!(
            "{}dry run, nothing written; would be {}",
            unified_diff(text, &new_text, &p.to_string()),
            plan.message
        ));
    }
    let backup = backup_path(file);
    write_like(&backup, text.as_bytes(), meta).map_err(|e| {
        CliError::Io(format!(
            "cannot write the backup {}: {e}; {p} was not changed",
            backup.display()
        ))
    })?;
    write_like(file, new_text.as_bytes(), meta)
        .map_err(|e| CliError::Io(format!("cannot write {p}: {e}; it was not changed")))?;
    Ok(format!("{} (backup: {})", plan.message, backup.display()))
}

/// Largest CA keys file read by [`check_module_files`].
const MAX_CA_KEYS_FILE: u64 = 1024 * 1024;

/// Checks the files a module line's options name the way the module does at every session:
/// a CA keys file that is missing, holds no key, is a symlink, is writable by group or
/// others, or (when run as root) is not owned by root makes the module deny EVERY session,
/// plain logins included, and so does such a KRL. `enable-pam` refuses to add a line that
/// would do that.
pub fn check_module_files(options: &str) -> Result<(), String> {
    let mut ca_keys = None;
    let mut krl = None;
    for o in options.split_whitespace() {
        if let Some(p) = o.strip_prefix("ca_keys=") {
            ca_keys = Some(PathBuf::from(p));
        } else if let Some(p) = o.strip_prefix("krl=") {
            krl = Some(PathBuf::from(p));
        }
    }
    let Some(ca_keys) = ca_keys else {
        return Err(format!(
            "the module options `{options}` name no ca_keys=PATH, which pam_breakglass requires (it would deny every session); add ca_keys=/etc/ssh/breakglass_user_ca.pub"
        ));
    };
    let fix_ca = format!(
        "install the CA's keys first (breakglass --config /etc/breakglass/host.toml ca-keys --out {}), then run enable-pam again",
        ca_keys.display()
    );
    check_trusted_file(&ca_keys, "CA keys file", &fix_ca)?;
    let text = std::fs::read(&ca_keys)
        .map_err(|e| format!("cannot read the CA keys file {}: {e}", ca_keys.display()))?;
    if text.len() as u64 > MAX_CA_KEYS_FILE {
        return Err(format!(
            "the CA keys file {} is larger than 1 MiB; check it",
            ca_keys.display()
        ));
    }
    let has_key = String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .any(|l| !l.is_empty() && !l.starts_with('#'));
    if !has_key {
        return Err(format!(
            "the CA keys file {} holds no key: with pam_breakglass.so in the stack every session would be denied; {fix_ca}",
            ca_keys.display()
        ));
    }
    if let Some(krl) = krl {
        let fix_krl = format!(
            "create an empty one (ssh-keygen -k -f {}) or let `breakglass host sync-krl` fetch the CA's, then run enable-pam again",
            krl.display()
        );
        check_trusted_file(&krl, "KRL", &fix_krl)?;
    }
    Ok(())
}

/// A file the module trusts: regular, not a symlink, not writable by group or others,
/// owned by root (checked when running as root).
fn check_trusted_file(path: &Path, what: &str, fix: &str) -> Result<(), String> {
    let p = path.display();
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        format!("the {what} {p} cannot be read ({e}): with pam_breakglass.so in the stack every session would be denied; {fix}")
    })?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "the {what} {p} is not a regular file (the module opens it without following symlinks and would deny every session); put the file itself there"
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "the {what} {p} is writable by group or others; the module refuses it and would deny every session: chmod go-w {p}"
        ));
    }
    if nix::unistd::geteuid().is_root() && meta.uid() != 0 {
        return Err(format!(
            "the {what} {p} is not owned by root; the module refuses it and would deny every session: chown root {p}"
        ));
    }
    Ok(())
}

/// Runs `enable-pam`; returns the message to print.
pub fn enable(a: &EnablePamArgs) -> Result<String, CliError> {
    let (text, meta) = read_pam_file(&a.pam_file)?;
    let plan = plan_enable(&text, &a.pam_file, &a.module, &a.options).map_err(CliError::Usage)?;
    if plan.new_text.is_some() {
        // The options of the line that will be in the file (a moved line keeps its own).
        let written = plan
            .new_text
            .as_deref()
            .map(|t| inspect(t, &a.module))
            .and_then(|r| r.module_session_rules().next().cloned())
            .map(|r| r.args.join(" "))
            .unwrap_or_default();
        check_module_files(&written).map_err(|e| {
            CliError::Usage(format!("{e}. {} was not changed", a.pam_file.display()))
        })?;
    }
    apply(&a.pam_file, &text, &meta, plan, a.dry_run)
}

/// Runs `disable-pam`; returns the message to print.
pub fn disable(a: &DisablePamArgs) -> Result<String, CliError> {
    let (text, meta) = read_pam_file(&a.pam_file)?;
    let plan = plan_disable(&text, &a.pam_file, &a.module);
    apply(&a.pam_file, &text, &meta, plan, a.dry_run)
}
