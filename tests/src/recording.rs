//! A host set up for session recording as the packages set it up: the recorder installed
//! set-gid to its own group (here a throw-away group), the spool directory traversable by
//! that group (0710) and its `recordings` directory `root:<group>` mode 2770; a real sshd
//! whose module is told where the recorder is (`recorder=`). And the asciicast v2 reader
//! the tests check recordings with.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use breakglass_proto::recording::{CAST_SUFFIX, RECORDINGS_DIR};
use breakglass_proto::spool::SessionRecord;
use breakglass_test_support::process::run_ok;
use breakglass_test_support::users::unique;

use crate::sshd::{CertSpec, ClientKey, Sshd, SshdOptions, TestCa, TestUser, pam_artifacts};

/// A throw-away group, removed on drop.
#[derive(Debug)]
pub struct TestGroup(pub String);

impl TestGroup {
    /// Creates a group with a unique name.
    pub fn create() -> Self {
        let name = unique("bgrec");
        run_ok(Command::new("groupadd").arg(&name));
        Self(name)
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.0).output();
    }
}

/// `chown root:<group> path` and `chmod mode path`.
pub fn own(path: &Path, group: &str, mode: u32) {
    run_ok(Command::new("chown").arg(format!("root:{group}")).arg(path));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A recording host: sshd, its CA, a user, the recorder's group and the set-gid recorder.
/// Fields drop in order: sshd (and its sessions) first, the user, then the group.
#[derive(Debug)]
pub struct RecordingHost {
    /// The sshd with pam_breakglass.so.
    pub sshd: Sshd,
    /// The CA both trust.
    pub ca: TestCa,
    /// The user who logs in.
    pub user: TestUser,
    /// The installed recorder (set-gid copy).
    pub recorder: PathBuf,
    /// The recorder's group.
    pub group: TestGroup,
    _bin: tempfile::TempDir,
}

impl RecordingHost {
    /// Sets the host up (needs root; the caller checks).
    pub fn start() -> Self {
        Self::start_with(&pam_artifacts().recorder)
    }

    /// Sets the host up with the recorder executable `recorder` (copied and made set-gid).
    pub fn start_with(recorder_src: &Path) -> Self {
        let group = TestGroup::create();
        let bin = tempfile::Builder::new()
            .prefix("bgrec")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let recorder = bin.path().join("breakglass-record");
        std::fs::copy(recorder_src, &recorder).expect("copy the recorder");
        // chown clears the set-id bits: the mode comes after.
        own(&recorder, &group.0, 0o2755);
        let ca = TestCa::new();
        let sshd = Sshd::start(&SshdOptions {
            module_options: format!("recorder={}", recorder.display()),
            ..SshdOptions::trusting(&ca)
        });
        let d = sshd.dir.path().to_owned();
        own(&d, &group.0, 0o710);
        let spool = d.join("spool");
        std::fs::create_dir(&spool).expect("mkdir spool");
        own(&spool, &group.0, 0o710);
        let rec = spool.join(RECORDINGS_DIR);
        std::fs::create_dir(&rec).expect("mkdir recordings");
        own(&rec, &group.0, 0o2770);
        Self {
            sshd,
            ca,
            user: TestUser::create(),
            recorder,
            group,
            _bin: bin,
        }
    }

    /// The recordings directory.
    pub fn recordings(&self) -> PathBuf {
        self.sshd.dir.path().join("spool").join(RECORDINGS_DIR)
    }

    /// A key with a certificate of grant `grant` for the user, of a recording tier
    /// running `command` (`None`: the login shell), recording input with `input`.
    pub fn recorded_key(&self, grant: u64, command: Option<&str>, input: bool) -> ClientKey {
        let spec = CertSpec::new(grant, &self.user.name, 300).with_recording(
            &self.recorder.to_string_lossy(),
            command,
            input,
        );
        self.key(&format!("rec{grant}"), &spec)
    }

    /// A key with a certificate as `spec` says.
    pub fn key(&self, name: &str, spec: &CertSpec) -> ClientKey {
        ClientKey::with_cert(self.sshd.dir.path(), name, &self.ca, spec)
    }

    /// The recording files (`*.cast`) in the recordings directory.
    pub fn casts(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.recordings())
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.to_string_lossy().ends_with(CAST_SUFFIX))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The spool record of a denied session, once it is there (up to 60 s). A deny record
    /// names no grant (`<host>-none-...-deny`): there is one denied session per test.
    pub fn deny_record(&self) -> SessionRecord {
        self.record_named("-none-", "deny")
    }

    /// The spool record of `grant` and `event`, once it is there (up to 60 s).
    pub fn record(&self, grant: u64, event: &str) -> SessionRecord {
        self.record_named(&format!("g-{grant:016x}"), event)
    }

    fn record_named(&self, grant: &str, event: &str) -> SessionRecord {
        assert!(
            self.sshd
                .wait_spool(grant, event, std::time::Duration::from_secs(60)),
            "no {event} record of {grant}: {:?}\n{}",
            self.sshd.spool_files(),
            self.sshd.log()
        );
        let name = self
            .sshd
            .spool_files()
            .into_iter()
            .find(|f| f.contains(grant) && f.ends_with(&format!("-{event}.json")))
            .expect("record file");
        let bytes = std::fs::read(self.sshd.dir.path().join("spool").join(name)).expect("read");
        SessionRecord::from_json(&bytes).expect("record parses")
    }
}

/// An asciicast v2 file, read strictly: a header object with version 2 and a positive
/// width and height, then one `[time, code, data]` array per line, times never going back.
#[derive(Debug)]
pub struct Cast {
    /// The header.
    pub header: serde_json::Value,
    /// The events: seconds since the start, code (`o`, `i`, `r`), data.
    pub events: Vec<(f64, String, String)>,
}

impl Cast {
    /// Parses `text`; the error names the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        let header: serde_json::Value = serde_json::from_str(lines.next().ok_or("empty file")?)
            .map_err(|e| format!("header: {e}"))?;
        if header["version"] != 2 {
            return Err(format!("header version is not 2: {header}"));
        }
        for k in ["width", "height"] {
            if header[k].as_u64().unwrap_or(0) == 0 {
                return Err(format!("header {k} is not a positive number: {header}"));
            }
        }
        let mut events = Vec::new();
        let mut last = 0.0;
        for (i, line) in lines.enumerate() {
            let v: (f64, String, String) =
                serde_json::from_str(line).map_err(|e| format!("line {}: {e}: {line}", i + 2))?;
            if v.0 < last {
                return Err(format!("line {}: time goes back", i + 2));
            }
            last = v.0;
            events.push(v);
        }
        Ok(Self { header, events })
    }

    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Self, String> {
        Self::parse(&std::fs::read_to_string(path).map_err(|e| e.to_string())?)
    }

    /// Everything the session showed (the `o` events joined).
    pub fn output(&self) -> String {
        self.events
            .iter()
            .filter(|e| e.1 == "o")
            .map(|e| e.2.as_str())
            .collect()
    }

    /// Everything the user typed (the `i` events joined).
    pub fn input(&self) -> String {
        self.events
            .iter()
            .filter(|e| e.1 == "i")
            .map(|e| e.2.as_str())
            .collect()
    }
}
