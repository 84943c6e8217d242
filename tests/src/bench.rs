//! The command line of the benchmark binaries in `benches/` (`harness = false`): they
//! run only under `cargo bench`, as root, for a number of rounds given with a flag.

/// What a benchmark takes: `cargo bench -p breakglass-tests --bench BENCH -- FLAG N`.
#[derive(Debug)]
pub struct BenchArgs {
    /// The bench target (`revocation`).
    pub bench: &'static str,
    /// What it measures, for its messages (`revocation benchmark`).
    pub what: &'static str,
    /// The flag giving the number of rounds (`--runs`).
    pub flag: &'static str,
    /// Rounds without the flag.
    pub default: usize,
    /// Rounds in the example of how to run it.
    pub example: usize,
    /// Most rounds accepted.
    pub max: usize,
}

impl BenchArgs {
    /// The rounds to run; `None` (after saying how to run it) without `--bench`, as under
    /// `cargo test`. Exits 64 on a bad number and 77 when not root.
    pub fn rounds(&self) -> Option<usize> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if !args.iter().any(|a| a == "--bench") {
            eprintln!(
                "{}: run it with `cargo bench -p breakglass-tests --bench {} -- {} {}` (as root)",
                self.what, self.bench, self.flag, self.example
            );
            return None;
        }
        let rounds = match args.iter().position(|a| a == self.flag) {
            None => self.default,
            Some(i) => match args.get(i + 1).and_then(|v| v.parse::<usize>().ok()) {
                Some(n) if (1..=self.max).contains(&n) => n,
                _ => {
                    eprintln!("{}: give a number from 1 to {}", self.flag, self.max);
                    std::process::exit(64);
                }
            },
        };
        if !crate::is_root() {
            eprintln!(
                "{}: needs root (a real sshd on loopback, PAM, a test user)",
                self.what
            );
            std::process::exit(77);
        }
        Some(rounds)
    }
}
