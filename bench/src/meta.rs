//! The edge's own state in a journal directory (`edge.meta`): instrument specs, allocation
//! groups, and anchors that map input sequences back to script command numbers (the K of
//! `recovered through command K`). Written atomically before the commands it describes
//! enter the engine.

use crate::script::{AllocGroup, AssetSpec};
use ringex_engine::{AccountId, InstrumentId, InstrumentSpec};
use rust_decimal::Decimal;
use std::io::{self, Write};
use std::path::Path;
use std::str::FromStr;

/// File name of the edge state in a journal directory.
pub const META_FILE: &str = "edge.meta";

/// The edge state.
#[derive(Clone, Debug, Default)]
pub struct EdgeMeta {
    /// Instrument specs.
    pub specs: Vec<InstrumentSpec>,
    /// Allocation groups.
    pub groups: Vec<AllocGroup>,
    /// Declared assets, in id order.
    pub assets: Vec<AssetSpec>,
    /// (input sequence, command number): for an input sequence `s`, the last anchor at or
    /// before it gives `k + (s - anchor)`.
    pub anchors: Vec<(u64, u64)>,
}

impl EdgeMeta {
    /// The script command number of input sequence `s` (0 when none).
    pub fn command_number(&self, s: u64) -> u64 {
        match self.anchors.iter().rev().find(|a| a.0 <= s) {
            Some(&(a, k)) => k + (s - a),
            None => 0,
        }
    }

    /// Records that input sequence `s` has command number `k`.
    pub fn anchor(&mut self, s: u64, k: u64) {
        if self.command_number(s) != k || self.anchors.is_empty() {
            self.anchors.push((s, k));
        }
    }

    /// Takes the instruments, allocation groups and assets a script has defined so far.
    pub fn take_definitions(&mut self, script: &crate::script::Script) {
        self.specs = script
            .specs()
            .iter()
            .filter(|s| !s.symbol.is_empty())
            .cloned()
            .collect();
        self.groups = script.groups().to_vec();
        self.assets = script.assets().to_vec();
    }

    /// Reads `dir/edge.meta`; `Ok(None)` when there is none.
    pub fn read(dir: &Path) -> io::Result<Option<EdgeMeta>> {
        let text = match std::fs::read_to_string(dir.join(META_FILE)) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |l: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("edge.meta: bad line {l:?}"),
            )
        };
        let mut m = EdgeMeta::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.split(',').collect();
            match f[0] {
                "ringex-meta" => {}
                "instrument" if f.len() == 5 => {
                    let id = f[1].parse::<u32>().map_err(|_| bad(line))?;
                    let tick = Decimal::from_str(f[3]).map_err(|_| bad(line))?;
                    let lot = Decimal::from_str(f[4]).map_err(|_| bad(line))?;
                    m.specs.push(
                        InstrumentSpec::new(InstrumentId(id), f[2], tick, lot)
                            .map_err(|_| bad(line))?,
                    );
                }
                "alloc_group" if f.len() == 3 => {
                    let script_id = f[1].parse::<u64>().map_err(|_| bad(line))?;
                    let mut members = Vec::new();
                    for mem in f[2].split(';') {
                        let (a, w) = mem.split_once(':').ok_or_else(|| bad(line))?;
                        members.push((
                            AccountId(a.parse().map_err(|_| bad(line))?),
                            Decimal::from_str(w).map_err(|_| bad(line))?,
                        ));
                    }
                    m.groups.push(AllocGroup { script_id, members });
                }
                "asset" if f.len() == 3 => {
                    let scale = f[2].parse::<u8>().map_err(|_| bad(line))?;
                    m.assets.push(AssetSpec {
                        name: f[1].to_string(),
                        scale,
                    });
                }
                "anchor" if f.len() == 3 => {
                    let s = f[1].parse::<u64>().map_err(|_| bad(line))?;
                    let k = f[2].parse::<u64>().map_err(|_| bad(line))?;
                    m.anchors.push((s, k));
                }
                _ => return Err(bad(line)),
            }
        }
        Ok(Some(m))
    }

    /// Writes `dir/edge.meta` atomically (temp file, fsync, rename, fsync directory).
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{META_FILE}.tmp"));
        {
            let mut f = io::BufWriter::new(std::fs::File::create(&tmp)?);
            writeln!(f, "ringex-meta,1")?;
            for s in &self.specs {
                writeln!(
                    f,
                    "instrument,{},{},{},{}",
                    s.id.0, s.symbol, s.tick_size, s.lot_size
                )?;
            }
            for a in &self.assets {
                writeln!(f, "asset,{},{}", a.name, a.scale)?;
            }
            for g in &self.groups {
                let members: Vec<String> = g
                    .members
                    .iter()
                    .map(|(a, w)| format!("{}:{}", a.0, w))
                    .collect();
                writeln!(f, "alloc_group,{},{}", g.script_id, members.join(";"))?;
            }
            for (s, k) in &self.anchors {
                writeln!(f, "anchor,{s},{k}")?;
            }
            f.flush()?;
            f.get_ref().sync_all()?;
        }
        std::fs::rename(&tmp, dir.join(META_FILE))?;
        std::fs::File::open(dir)?.sync_all()
    }
}
