//! Flags of the small benchmark binaries (`soak --commands N`, …): `--name value` pairs read
//! straight from the command line.

/// The value after `--name`, if given.
pub fn value(name: &str) -> Option<String> {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1))
        .cloned()
}

/// The number after `--name`, or `default` when it is missing or not a number.
pub fn number(name: &str, default: u64) -> u64 {
    value(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Checks the command line of a small benchmark binary before it runs: `--help` or `-h`
/// prints `usage` and exits 0; a `--flag` not in `known` prints it with `usage` and exits 2
/// (a mistyped flag must not quietly run the default benchmark).
pub fn check(usage: &str, known: &[&str]) {
    if let Err(code) = verdict(std::env::args().skip(1), known) {
        match code {
            Verdict::Help => {
                println!("{usage}");
                std::process::exit(0)
            }
            Verdict::Unknown(flag) => {
                eprintln!("unknown flag {flag}\n{usage}");
                std::process::exit(2)
            }
        }
    }
}

/// Why [`check`] stops a run.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `--help` or `-h`.
    Help,
    /// A flag the binary does not take.
    Unknown(String),
}

/// What [`check`] decides for these arguments.
pub fn verdict(args: impl IntoIterator<Item = String>, known: &[&str]) -> Result<(), Verdict> {
    for a in args {
        if a == "--help" || a == "-h" {
            return Err(Verdict::Help);
        }
        if a.starts_with("--") && !known.contains(&a.as_str()) {
            return Err(Verdict::Unknown(a));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_and_unknown_flags_stop_a_run() {
        let v = |a: &[&str]| verdict(a.iter().map(|s| s.to_string()), &["--runs", "--deep"]);
        assert_eq!(v(&["--runs", "3", "file.csv"]), Ok(()));
        assert_eq!(v(&["--runs", "3", "--help"]), Err(Verdict::Help));
        assert_eq!(v(&["-h"]), Err(Verdict::Help));
        assert_eq!(
            v(&["--ring-size", "4"]),
            Err(Verdict::Unknown("--ring-size".into()))
        );
    }
}
