//! A throw-away PostgreSQL cluster for the tests of the PostgreSQL audit backend: `initdb`
//! in a temporary directory as the `postgres` user, its own loopback port and socket
//! directory, a login role and a database for the daemon, stopped and removed on drop.
//! Also a streaming replica of it (`pg_basebackup -R`) for the failover tests.
//!
//! Needs root (the server runs as `postgres`, which `initdb` requires: it refuses root) and
//! the Debian packages `postgresql` (scripts/install-deps). [`PgCluster::available`] says
//! loudly why a test cannot run, and fails it under CI.
//!
//! Every wait is bounded: `pg_ctl -w -t` for start, stop and promotion, and a drop that stops
//! the server with `-m immediate` before the directory goes.

use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::machine::{can_run, free_port, is_root};

/// The daemon's role in the test cluster.
pub const ROLE: &str = "breakglass";
/// The daemon's database in the test cluster.
pub const DATABASE: &str = "breakglass";
/// Longest `pg_ctl` waits for a start, stop or promotion (seconds).
const PG_CTL_WAIT_SECS: u32 = 60;

/// The PostgreSQL server programs: the highest version under `/usr/lib/postgresql/*/bin`
/// (Debian keeps them off PATH), else the directory `pg_config --bindir` names.
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    dir.join("initdb").is_file().then_some(dir)
}

/// The `postgres` system user's uid and gid.
fn postgres_user() -> Option<(u32, u32)> {
    let u = nix::unistd::User::from_name("postgres").ok()??;
    Some((u.uid.as_raw(), u.gid.as_raw()))
}

/// One server: a data directory, a port and a socket directory, run by `postgres`.
#[derive(Debug)]
pub struct PgServer {
    bin: PathBuf,
    uid: u32,
    gid: u32,
    /// The data directory.
    pub data: PathBuf,
    /// The Unix socket directory (also the superuser's way in: trust, as `postgres`).
    pub socket_dir: PathBuf,
    /// The loopback TCP port.
    pub port: u16,
    log: PathBuf,
    running: bool,
}

impl PgServer {
    /// A command of the server's programs, run as `postgres` in the server's directory.
    fn program(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.uid(self.uid)
            .gid(self.gid)
            .current_dir(self.socket_dir.parent().unwrap_or(Path::new("/")))
            .env("PGHOST", &self.socket_dir)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .env_remove("PGDATABASE")
            .env_remove("PGPASSWORD");
        cmd
    }

    fn run(&self, what: &str, cmd: &mut Command) -> Output {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("{what}: cannot run {:?}: {e}", cmd.get_program()));
        assert!(
            out.status.success(),
            "{what} failed ({}):\n{}{}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        out
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts the server and waits (bounded) until it accepts connections.
    pub fn start(&mut self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.socket_dir.display()
        );
        let mut cmd = self.program("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .arg("-o")
            .arg(opts)
            .args(["-w", "-t", &PG_CTL_WAIT_SECS.to_string(), "start"]);
        self.run("pg_ctl start", &mut cmd);
        self.running = true;
    }

    /// Stops the server: `mode` is `smart`, `fast` or `immediate` (a crash: no checkpoint,
    /// recovery from the WAL at the next start).
    pub fn stop(&mut self, mode: &str) {
        let mut cmd = self.program("pg_ctl");
        cmd.arg("-D").arg(&self.data).args([
            "-m",
            mode,
            "-w",
            "-t",
            &PG_CTL_WAIT_SECS.to_string(),
            "stop",
        ]);
        self.run("pg_ctl stop", &mut cmd);
        self.running = false;
    }

    /// `pg_ctl restart -m immediate`: the database crashes and comes back on the same port.
    pub fn restart_immediate(&mut self) {
        self.stop("immediate");
        self.start();
    }

    /// Whether the server is started (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Runs `sql` as the superuser in `database` (`psql -v ON_ERROR_STOP=1 -At`); returns
    /// what it printed, trimmed. Panics when psql fails, with its message.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let mut cmd = self.program("psql");
        cmd.args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-d",
            database,
            "-c",
            sql,
        ]);
        let out = self.run(&format!("psql {sql:?}"), &mut cmd);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Sets a server parameter (`ALTER SYSTEM`) and reloads the configuration.
    pub fn set(&self, name: &str, value: &str) {
        self.psql(
            "postgres",
            &format!("ALTER SYSTEM SET {name} = '{}'", value.replace('\'', "''")),
        );
        self.psql("postgres", "SELECT pg_reload_conf()");
    }

    /// Turns TLS on with `cert_pem` (chain) and `key_pem`, written into the data directory
    /// (the key mode 0600, owned by `postgres`), and, with `only_tls`, refuses TCP logins
    /// without it (`hostssl` rules only); reloads the configuration.
    pub fn enable_tls(&self, cert_pem: &str, key_pem: &str, only_tls: bool) {
        let cert = self.data.join("server.crt");
        let key = self.data.join("server.key");
        std::fs::write(&cert, cert_pem).expect("write server.crt");
        std::fs::write(&key, key_pem).expect("write server.key");
        for f in [&cert, &key] {
            chown(f, Some(self.uid), Some(self.gid)).expect("chown the TLS files");
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .expect("chmod server.key");
        if only_tls {
            let hba = self.data.join("pg_hba.conf");
            let text = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
            let rules: String = text
                .lines()
                .map(|l| match l.strip_prefix("host ") {
                    Some(rest) => format!("hostssl {rest}\n"),
                    None => format!("{l}\n"),
                })
                .collect();
            std::fs::write(&hba, rules).expect("write pg_hba.conf");
        }
        self.psql("postgres", "ALTER SYSTEM SET ssl = on");
        self.psql("postgres", "SELECT pg_reload_conf()");
    }

    /// Promotes a standby to a primary and waits (bounded) until it accepts writes.
    pub fn promote(&mut self) {
        let mut cmd = self.program("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", &PG_CTL_WAIT_SECS.to_string(), "promote"]);
        self.run("pg_ctl promote", &mut cmd);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        // Immediate: nothing of a throw-away cluster needs keeping, and the drop must not
        // wait on clients a failing test left connected.
        let _ = self
            .program("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .output();
    }
}

/// A throw-away cluster: one primary with the daemon's role and database, and any
/// replicas made from it; all stopped and removed on drop.
#[derive(Debug)]
pub struct PgCluster {
    /// The primary (after a failover, the old primary: see [`PgCluster::replica`]).
    pub primary: PgServer,
    /// The daemon role's password.
    pub password: String,
    // Dropped last: the servers stop before their directories go.
    dir: tempfile::TempDir,
}

impl PgCluster {
    /// Whether a cluster can be started here (root, the `postgres` user and the server
    /// programs); says loudly why not, and panics under CI (see [`can_run`]).
    pub fn available(test: &str) -> bool {
        can_run(&format!("root: {test}"), is_root())
            && can_run(
                &format!("PostgreSQL (initdb, the postgres user): {test}"),
                bin_dir().is_some() && postgres_user().is_some(),
            )
    }

    /// `initdb` in a new temporary directory, started on a free loopback port, with a
    /// login role [`ROLE`] (a random password, scram-sha-256 over TCP) owning the
    /// database [`DATABASE`]. Call [`available`](Self::available) first.
    pub fn start() -> Self {
        let bin = bin_dir().expect("PostgreSQL server programs (scripts/install-deps)");
        let (uid, gid) = postgres_user().expect("the postgres user (scripts/install-deps)");
        let dir = tempfile::Builder::new()
            .prefix("bg-pg-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        chown(dir.path(), Some(uid), Some(gid)).expect("chown the cluster's directory");
        let mut primary = new_server(&bin, uid, gid, dir.path(), "primary");
        let mut cmd = primary.program("initdb");
        cmd.arg("-D").arg(&primary.data).args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]);
        primary.run("initdb", &mut cmd);
        primary.start();
        let password = format!("pw{}", crate::users::unique("pg"));
        primary.psql(
            "postgres",
            &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'"),
        );
        primary.psql(
            "postgres",
            &format!("CREATE DATABASE {DATABASE} OWNER {ROLE}"),
        );
        Self {
            primary,
            password,
            dir,
        }
    }

    /// The daemon's connection URL to `servers` (libpq style; several hosts are tried in
    /// order, and with `target_session_attrs=read-write` only a primary is taken).
    pub fn url_of(&self, servers: &[&PgServer]) -> String {
        let hosts: Vec<String> = servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!(
            "postgresql://{ROLE}:{}@{}/{DATABASE}?target_session_attrs=read-write&connect_timeout=5",
            self.password,
            hosts.join(",")
        )
    }

    /// The daemon's connection URL to the primary.
    pub fn url(&self) -> String {
        self.url_of(&[&self.primary])
    }

    /// Runs `sql` as the superuser in the daemon's database (see [`PgServer::psql`]).
    pub fn psql(&self, sql: &str) -> String {
        self.primary.psql(DATABASE, sql)
    }

    /// A streaming replica of the primary (`pg_basebackup -R`: it follows the primary and
    /// can be promoted), started on its own port. `name` tells its directory.
    pub fn replica(&self, name: &str) -> PgServer {
        let mut replica = new_server(
            &self.primary.bin,
            self.primary.uid,
            self.primary.gid,
            self.dir.path(),
            name,
        );
        let mut cmd = self.primary.program("pg_basebackup");
        cmd.arg("-D")
            .arg(&replica.data)
            .args(["-R", "-X", "stream", "-c", "fast", "-d"])
            .arg(format!(
                "host={} port={} user=postgres application_name={name}",
                self.primary.socket_dir.display(),
                self.primary.port
            ));
        self.primary.run("pg_basebackup", &mut cmd);
        replica.start();
        replica
    }

    /// Waits (up to `timeout`) until `replica` has replayed everything the primary had
    /// written when called; false when it did not.
    pub fn replica_caught_up(&self, replica: &PgServer, timeout: Duration) -> bool {
        let lsn = self.primary.psql("postgres", "SELECT pg_current_wal_lsn()");
        crate::wait::until(timeout, Duration::from_millis(50), || {
            replica.psql(
                "postgres",
                &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"),
            ) == "t"
        })
    }

    /// Runs `sql` as the daemon's role over TCP through `url` (as a client would); returns
    /// what psql printed, trimmed, or its error message.
    pub fn psql_as_role(&self, url: &str, sql: &str) -> Result<String, String> {
        let out = self
            .primary
            .program("psql")
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-At", url, "-c", sql])
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Makes the primary wait for `standby` (by its name) before it acknowledges a commit
    /// (`synchronous_standby_names`, with `synchronous_commit = on`). A replica made after
    /// this copies the setting: once promoted, clear it there (`set(.., "")`), or its
    /// commits wait for a standby that does not exist.
    pub fn synchronous(&self, standby: &str) {
        self.primary
            .set("synchronous_standby_names", &format!("\"{standby}\""));
        self.primary.set("synchronous_commit", "on");
    }
}

/// A server's directories in `root`, made and owned by `postgres` (not started).
fn new_server(bin: &Path, uid: u32, gid: u32, root: &Path, name: &str) -> PgServer {
    let base = root.join(name);
    let socket_dir = base.join("socket");
    std::fs::create_dir_all(&socket_dir).expect("the server's directories");
    for d in [&base, &socket_dir] {
        chown(d, Some(uid), Some(gid)).expect("chown the server's directories");
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    PgServer {
        bin: bin.to_owned(),
        uid,
        gid,
        data: base.join("data"),
        socket_dir,
        port: free_port(),
        log: base.join("server.log"),
        running: false,
    }
}
