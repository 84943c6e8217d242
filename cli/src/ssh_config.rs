//! `breakglass config ssh [--install]` and its `Match exec` test, `breakglass ssh-check`.
//!
//! The block makes plain `ssh host` (and what calls ssh: scp, rsync, ansible) use the
//! breakglass certificate next to the key when `breakglass ssh-check` says it covers the
//! login: a `Match exec` line, then `IdentityFile` and `CertificateFile`. `--install`
//! writes it to its own file (`~/.ssh/breakglass.conf`) and puts an `Include` of it at the
//! top of `~/.ssh/config` (after a backup of the file), once: running it again changes
//! nothing that is already right.
#![forbid(unsafe_code)]

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::commands::{self, KeyPaths};
use crate::error::CliError;
use crate::ssh::{self, MIN_VALID, Want};

/// The file `--install` writes the block to, in `~/.ssh`.
pub const BLOCK_FILE: &str = "breakglass.conf";

/// `breakglass config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print an ssh_config block that makes plain `ssh HOST` (and scp, rsync, ansible)
    /// use your breakglass certificate while one is valid for the host and user
    /// (`Match exec "breakglass ssh-check ..."`, then IdentityFile and CertificateFile);
    /// other logins are left alone. With --install, write it to ~/.ssh/breakglass.conf
    /// and Include that file at the top of ~/.ssh/config (backed up first); running it
    /// again changes nothing
    Ssh(SshConfigCmd),
}

/// `breakglass config ssh`.
#[derive(Debug, Args)]
pub struct SshConfigCmd {
    /// Write the block to ~/.ssh/breakglass.conf and Include it from ~/.ssh/config
    /// (mode 0600; a backup of ~/.ssh/config is kept beside it) instead of printing it
    #[arg(long)]
    pub install: bool,
    /// Your SSH public key [default: as for `request`]
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
}

/// `breakglass ssh-check`.
#[derive(Debug, Args)]
pub struct SshCheckCmd {
    /// Your SSH public key; the certificate checked is <key>-cert.pub [default: as for
    /// `request`]
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// The command ssh will run; without it, only a certificate without force-command
    /// passes
    #[arg(long, value_name = "CMD")]
    pub command: Option<String>,
    /// Say on stderr why the certificate does not cover the login
    #[arg(short, long)]
    pub verbose: bool,
    /// The remote user (%r in ssh_config)
    #[arg(value_name = "USER")]
    pub user: String,
    /// The host's names (%n, the name given to ssh, and %h, after HostName): covering
    /// any of them is enough
    #[arg(value_name = "HOST", required = true)]
    pub hosts: Vec<String>,
}

/// The ssh_config block for the key at `paths`, with `exe` as the `breakglass` to run.
pub fn block(exe: &Path, paths: &KeyPaths) -> Result<String, CliError> {
    let quote = |p: &Path| -> Result<String, CliError> {
        // In a shell command inside ssh_config's double quotes: single-quote for the shell.
        let s = ssh::ssh_path(p)?;
        if s.contains('\'') {
            return Err(CliError::Usage(format!(
                "{}: a path with a single quote cannot go into a Match exec line",
                p.display()
            )));
        }
        Ok(format!("'{s}'"))
    };
    Ok(format!(
        "# breakglass: while the certificate next to your key is valid for the host and the\n\
         # user, plain ssh (and scp, rsync, ansible) log in with it. Made by\n\
         # `breakglass config ssh`; `breakglass ssh-check --help` says what is checked.\n\
         Match exec \"{exe} ssh-check --public-key {public} %r %n %h\"\n\
         \x20   IdentityFile \"{private}\"\n\
         \x20   CertificateFile \"{cert}\"\n",
        exe = quote(exe)?,
        public = quote(&paths.public)?,
        private = ssh::ssh_path(&paths.private)?,
        cert = ssh::ssh_path(&paths.certificate)?,
    ))
}

/// The line `--install` puts at the top of `~/.ssh/config`.
pub fn include_line(block_file: &Path) -> Result<String, CliError> {
    Ok(format!("Include \"{}\"", ssh::ssh_path(block_file)?))
}

/// What [`install`] changed.
#[derive(Debug, PartialEq, Eq)]
pub struct Installed {
    /// The block file was written (it was missing or different).
    pub wrote_block: bool,
    /// What became of `~/.ssh/config`.
    pub config: ConfigFile,
}

/// What [`install`] did to `~/.ssh/config`.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigFile {
    /// It already included the block file: left alone.
    Unchanged,
    /// There was none: created with the `Include` line.
    Created,
    /// The `Include` line was put at its top; the old file was saved as `backup`.
    Included {
        /// The copy of the file as it was.
        backup: PathBuf,
    },
}

/// Writes `text` to `<ssh_dir>/breakglass.conf` and includes it at the top of
/// `<ssh_dir>/config`, each only if not already so.
pub fn install(ssh_dir: &Path, text: &str, now: u64) -> Result<Installed, CliError> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| CliError::Io(format!("{p}: {e}"))
    };
    if !ssh_dir.exists() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(ssh_dir)
            .map_err(io(ssh_dir))?;
    }
    let block_file = ssh_dir.join(BLOCK_FILE);
    let wrote_block = std::fs::read_to_string(&block_file).ok().as_deref() != Some(text);
    if wrote_block {
        commands::write_atomic(&block_file, text.as_bytes(), 0o600)?;
    }
    let config = ssh_dir.join("config");
    let include = include_line(&block_file)?;
    let old = match std::fs::symlink_metadata(&config) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(CliError::Usage(format!(
                "{} is a symbolic link; not replacing it: add this line at its top yourself:\n{include}",
                config.display()
            )));
        }
        Ok(_) => Some(std::fs::read_to_string(&config).map_err(io(&config))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&config)(e)),
    };
    if old
        .as_deref()
        .is_some_and(|t| t.lines().any(|l| l.trim() == include))
    {
        return Ok(Installed {
            wrote_block,
            config: ConfigFile::Unchanged,
        });
    }
    let done = match &old {
        Some(text) => {
            let backup = ssh_dir.join(format!("config.before-breakglass.{now}"));
            commands::write_atomic(&backup, text.as_bytes(), 0o600)?;
            ConfigFile::Included { backup }
        }
        None => ConfigFile::Created,
    };
    // At the top: an Include under a Host or Match line would apply only there.
    let new = format!(
        "# Added by `breakglass config ssh --install`: use breakglass certificates while valid.\n{include}\n\n{}",
        old.unwrap_or_default()
    );
    commands::write_atomic(&config, new.as_bytes(), 0o600)?;
    Ok(Installed {
        wrote_block,
        config: done,
    })
}

fn home_ssh_dir() -> Result<PathBuf, CliError> {
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".ssh"))
        .ok_or_else(|| CliError::Usage("HOME is not set: cannot find ~/.ssh".into()))
}

/// Runs `breakglass config ...`.
pub fn run(cmd: ConfigCmd) -> Result<(), CliError> {
    let ConfigCmd::Ssh(cmd) = cmd;
    let public = match cmd.public_key {
        Some(p) => p,
        None => commands::read_public_key(None)?.0.public,
    };
    // Absolute paths: ssh runs the Match exec from any directory, and expands `~` from
    // the password database rather than $HOME.
    let public = std::path::absolute(&public)
        .map_err(|e| CliError::Io(format!("{}: {e}", public.display())))?;
    let paths = KeyPaths::from_public(&public);
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Io(format!("cannot find the breakglass executable: {e}")))?;
    let text = block(&exe, &paths)?;
    if !cmd.install {
        print!("{text}");
        return Ok(());
    }
    let dir = home_ssh_dir()?;
    let done = install(&dir, &text, ssh::unix_now())?;
    let block_file = dir.join(BLOCK_FILE);
    let config = dir.join("config");
    if done.wrote_block {
        println!("Wrote {}.", block_file.display());
    }
    match &done.config {
        ConfigFile::Unchanged => println!(
            "{} already includes {}.",
            config.display(),
            block_file.display()
        ),
        ConfigFile::Created => println!("Created {} including it.", config.display()),
        ConfigFile::Included { backup } => println!(
            "Included it at the top of {} (the previous file is saved as {}).",
            config.display(),
            backup.display()
        ),
    }
    println!(
        "Plain `ssh HOST` now uses {} while it is valid for HOST and the user.",
        paths.certificate.display()
    );
    Ok(())
}

/// Runs `breakglass ssh-check`: a predicate for `Match exec`, so it answers with its
/// exit status alone (0 covered, 1 not), quietly, without the network.
pub fn check(cmd: SshCheckCmd) -> Result<(), CliError> {
    let answer = (|| -> Result<(), String> {
        let (paths, text) =
            commands::read_public_key(cmd.public_key.as_deref()).map_err(|e| e.to_string())?;
        let key = ssh_key::PublicKey::from_openssh(text.trim())
            .map_err(|e| format!("{}: {e}", paths.public.display()))?;
        let cert = std::fs::read_to_string(&paths.certificate)
            .map_err(|e| format!("{}: {e}", paths.certificate.display()))?;
        let hosts: Vec<&str> = cmd.hosts.iter().map(String::as_str).collect();
        let want = Want {
            key: &key,
            user: &cmd.user,
            hosts: &hosts,
            command: cmd.command.as_deref(),
            permits: &[],
        };
        ssh::check_certificate(&cert, &want, ssh::unix_now(), MIN_VALID)
            .map(|_| ())
            .map_err(|why| format!("{}: {why}", paths.certificate.display()))
    })();
    match answer {
        Ok(()) => Ok(()),
        Err(why) => {
            if cmd.verbose {
                eprintln!("breakglass ssh-check: {why}");
            }
            // An answer, not an error: no message (ssh shows the stderr of Match exec).
            std::process::exit(crate::error::ExitStatus::CHECK_FAILED.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> KeyPaths {
        KeyPaths::from_public(Path::new("/home/a/.ssh/id_ed25519.pub"))
    }

    #[test]
    fn the_block_matches_with_ssh_check_and_names_key_and_certificate() {
        let text = block(Path::new("/usr/bin/breakglass"), &paths()).unwrap();
        assert!(text.contains(
            "Match exec \"'/usr/bin/breakglass' ssh-check --public-key '/home/a/.ssh/id_ed25519.pub' %r %n %h\"\n"
        ), "{text}");
        assert!(text.contains("    IdentityFile \"/home/a/.ssh/id_ed25519\"\n"));
        assert!(text.contains("    CertificateFile \"/home/a/.ssh/id_ed25519-cert.pub\"\n"));
        let odd = KeyPaths::from_public(Path::new("/home/a/it's.pub"));
        assert!(block(Path::new("/usr/bin/breakglass"), &odd).is_err());
    }

    #[test]
    fn install_includes_once_with_a_backup_and_0600_files() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(".ssh");
        std::fs::create_dir(&dir).unwrap();
        let config = dir.join("config");
        std::fs::write(&config, "Host bastion\n    User me\n").unwrap();
        let text = block(Path::new("/usr/bin/breakglass"), &paths()).unwrap();

        let first = install(&dir, &text, 100).unwrap();
        let backup = dir.join("config.before-breakglass.100");
        assert_eq!(
            first,
            Installed {
                wrote_block: true,
                config: ConfigFile::Included {
                    backup: backup.clone()
                }
            }
        );
        assert_eq!(
            std::fs::read_to_string(&backup).unwrap(),
            "Host bastion\n    User me\n"
        );
        let now = std::fs::read_to_string(&config).unwrap();
        let include = include_line(&dir.join(BLOCK_FILE)).unwrap();
        assert!(now.lines().nth(1) == Some(include.as_str()), "{now}");
        assert!(now.ends_with("\nHost bastion\n    User me\n"), "{now}");
        assert_eq!(std::fs::read_to_string(dir.join(BLOCK_FILE)).unwrap(), text);
        for f in [&config, &dir.join(BLOCK_FILE), &backup] {
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }

        // Again: nothing changes, no second backup.
        assert_eq!(
            install(&dir, &text, 200).unwrap(),
            Installed {
                wrote_block: false,
                config: ConfigFile::Unchanged
            }
        );
        assert_eq!(std::fs::read_to_string(&config).unwrap(), now);
        assert!(!dir.join("config.before-breakglass.200").exists());

        // Another key: the block file is rewritten, the Include stays as it is.
        let other = block(
            Path::new("/usr/bin/breakglass"),
            &KeyPaths::from_public(Path::new("/k/id.pub")),
        )
        .unwrap();
        let again = install(&dir, &other, 300).unwrap();
        assert_eq!(
            again,
            Installed {
                wrote_block: true,
                config: ConfigFile::Unchanged
            }
        );
        assert_eq!(std::fs::read_to_string(&config).unwrap(), now);
    }

    #[test]
    fn install_creates_a_missing_config_and_refuses_a_symlinked_one() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(".ssh");
        let text = block(Path::new("/usr/bin/breakglass"), &paths()).unwrap();
        let done = install(&dir, &text, 1).unwrap();
        assert_eq!(done.config, ConfigFile::Created);
        assert!(
            std::fs::read_to_string(dir.join("config"))
                .unwrap()
                .contains("Include")
        );

        let linked = tempfile::tempdir().unwrap();
        let dir = linked.path().join(".ssh");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink("/nonexistent/dotfiles/ssh_config", dir.join("config")).unwrap();
        let e = install(&dir, &text, 1).unwrap_err().to_string();
        assert!(e.contains("symbolic link") && e.contains("Include"), "{e}");
    }
}
