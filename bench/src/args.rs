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
